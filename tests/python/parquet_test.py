#!/usr/bin/env python3
"""python.parquet: a Parquet corpus written with pyarrow, converted by scripts/parquet-to-jsonl.py
and prepared by `graft data prepare`, gives exactly the tokens of the same documents written as
JSONL directly; a missing column and a non-string column are one-line errors with exit code 2.

    parquet_test.py GRAFT_BIN REPO_ROOT

Installs pyarrow into REPO_ROOT/.cache/pyenv (scripts/pyenv.sh) when missing and re-runs itself
there; exits 77 (SKIP) only when that fails.
"""
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def ensure_pyarrow(root):
    try:
        import pyarrow  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("GRAFT_PYENV_REEXEC"):
        print(f"SKIP: pyarrow is still not importable under {sys.executable}")
        sys.exit(SKIP)
    r = subprocess.run([os.path.join(root, "scripts", "pyenv.sh"), "pyarrow"],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        print("SKIP: pyarrow could not be installed (scripts/pyenv.sh pyarrow failed)")
        sys.exit(SKIP)
    py = r.stdout.strip().splitlines()[-1]
    os.environ["GRAFT_PYENV_REEXEC"] = "1"
    os.execv(py, [py] + sys.argv)


def tokens(prepared):
    meta = json.load(open(os.path.join(prepared, "meta.json")))
    return meta


def main():
    graft, root = sys.argv[1], sys.argv[2]
    ensure_pyarrow(root)
    import pyarrow as pa
    import pyarrow.parquet as pq
    conv = os.path.join(root, "scripts", "parquet-to-jsonl.py")
    docs = [f"document {i}: " + "héllo wörld " * (i % 7 + 1) + "κόσμε 世界" for i in range(500)]
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(pa.table({"id": list(range(500)), "text": docs}),
                       os.path.join(d, "c.parquet"), row_group_size=97)
        with open(os.path.join(d, "direct.jsonl"), "w", encoding="utf-8") as f:
            for t in docs:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        r = subprocess.run([sys.executable, conv, os.path.join(d, "c.parquet"), "--field", "text",
                            "-o", os.path.join(d, "conv.jsonl.gz")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "500 documents" in r.stderr, r.stderr
        for name, src in (("a", "conv.jsonl.gz"), ("b", "direct.jsonl")):
            r = subprocess.run([graft, "data", "prepare", "--input", os.path.join(d, src),
                                "--tokenizer", "byte", "--out", os.path.join(d, name)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
        shards = lambda n: sorted(f for f in os.listdir(os.path.join(d, n)) if f.endswith(".bin"))
        assert shards("a") == shards("b") and shards("a"), (shards("a"), shards("b"))
        for s in shards("a"):
            a = open(os.path.join(d, "a", s), "rb").read()
            b = open(os.path.join(d, "b", s), "rb").read()
            assert a == b, f"{s}: the converted Parquet corpus tokenizes differently"
        for field, want in (("body", "no column 'body' (columns: id, text)"),
                            ("id", "column 'id' is int64, expected a string column")):
            r = subprocess.run([sys.executable, conv, os.path.join(d, "c.parquet"), "--field",
                                field, "-o", os.path.join(d, "x.jsonl.gz")],
                               capture_output=True, text=True)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1 and want in lines[0], r.stderr
            assert "c.parquet" in lines[0], r.stderr
    print("python.parquet: 500 documents, Parquet -> JSONL -> shards identical to JSONL -> shards;"
          " bad columns are one-line errors")


if __name__ == "__main__":
    main()
