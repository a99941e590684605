#!/usr/bin/env python3
"""Converts Parquet files (the format of most datasets on the Hugging Face hub, e.g. FineWeb) to
the gzipped JSON Lines that `graft data prepare` and `data.sources` read, streaming one record
batch at a time (constant memory whatever the file size).

    scripts/parquet-to-jsonl.py IN.parquet [IN2.parquet ...] --field text -o OUT.jsonl.gz

Only the chosen string column is kept (as {"text": ...} per line, or under --out-field). Needs
pyarrow: `scripts/pyenv.sh pyarrow` puts it in .cache/pyenv and prints that python. graft's C++
build does not link Arrow: Debian 12 does not package it (see docs/training.md, Data).
Errors (a missing file, no such column, a column that is not text) are one line naming the file,
exit code 2.
"""
import argparse
import gzip
import json
import sys


def fail(msg):
    print(f"parquet-to-jsonl: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--field", default="text", help="the string column to keep (default text)")
    ap.add_argument("--out-field", default="text", help="its key in the JSONL (default text)")
    ap.add_argument("-o", "--out", required=True, help="output .jsonl.gz (or .jsonl)")
    a = ap.parse_args()
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pt
    except ImportError:
        fail("pyarrow is not installed (scripts/pyenv.sh pyarrow installs it into .cache/pyenv)")
    opener = gzip.open if a.out.endswith(".gz") else open
    rows = 0
    with opener(a.out, "wt", encoding="utf-8") as out:
        for path in a.inputs:
            try:
                f = pq.ParquetFile(path)
            except (OSError, ValueError) as e:
                fail(f"{path}: cannot read as Parquet: {e}")
            schema = f.schema_arrow
            if a.field not in schema.names:
                fail(f"{path}: no column '{a.field}' (columns: {', '.join(schema.names)})")
            t = schema.field(a.field).type
            if not (pt.is_string(t) or pt.is_large_string(t)):
                fail(f"{path}: column '{a.field}' is {t}, expected a string column")
            for batch in f.iter_batches(columns=[a.field], batch_size=8192):
                for v in batch.column(0).to_pylist():
                    if v is None:
                        continue
                    out.write(json.dumps({a.out_field: v}, ensure_ascii=False) + "\n")
                    rows += 1
    print(f"parquet-to-jsonl: {rows} documents -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
