#!/usr/bin/env python3
"""python.tensorboard: a short `graft train` with logging.tensorboard and an eval, its event files
read back with the tensorboard package's EventAccumulator and compared with the metrics JSONL.

    tensorboard_test.py GRAFT_BIN REPO_ROOT

When `tensorboard` is not importable, scripts/pyenv.sh installs it into REPO_ROOT/.cache/pyenv
and the test re-runs itself under that venv; it exits 77 (SKIP for ctest) only when that fails.
Checks: every record's framing (masked CRC-32C of the length and of the data, with TensorBoard's
own CRC code), the first event's file_version, and for each scalar tag (loss, eval_loss, lr,
grad_norm, tokens_per_s, mfu, peak_mem_gib) the same steps and values (to float32) as the JSONL.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77
TAGS = ["loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem_gib"]


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def ensure_tensorboard(root):
    try:
        import tensorboard  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("GRAFT_PYENV_REEXEC"):
        skip(f"tensorboard is still not importable under {sys.executable}")
    r = subprocess.run([os.path.join(root, "scripts", "pyenv.sh"), "tensorboard"],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        skip("the tensorboard package could not be installed (scripts/pyenv.sh tensorboard "
             "failed; it needs python3-venv and PyPI)")
    py = r.stdout.strip().splitlines()[-1]
    os.environ["GRAFT_PYENV_REEXEC"] = "1"
    os.execv(py, [py] + sys.argv)


RECIPE = """model:
  config:
    model_type: llama
    vocab_size: 258
    hidden_size: 32
    intermediate_size: 64
    num_hidden_layers: 2
    num_attention_heads: 4
    num_key_value_heads: 2
    hidden_act: silu
    max_position_embeddings: 64
    rms_norm_eps: 1.0e-5
data:
  text: [{dir}/*.txt]
  cache_dir: {dir}/cache
  seq_len: 16
  validation: {{fraction: 0.1}}
train: {{steps: 7, batch_size: 2, sample_tokens: 0}}
optim: {{lr: 1.0e-2}}
schedule: {{type: cosine, warmup_steps: 2}}
eval: {{every: 3, batches: 4}}
logging:
  every: 2
  progress: plain
  tensorboard: {dir}/tb
  peak_tflops: 0.01
"""


def check_framing(path):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    data = open(path, "rb").read()
    at, records = 0, 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert crc == masked_crc32c(header), f"{path}: record {records}: bad length CRC"
        body = data[at + 12:at + 12 + length]
        (crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert crc == masked_crc32c(body), f"{path}: record {records}: bad data CRC"
        at += 16 + length
        records += 1
    return records


def main():
    graft, root = sys.argv[1], sys.argv[2]
    ensure_tensorboard(root)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory(prefix="graft-tb-test-") as d:
        words = "the license software you may copy and distribute of this program".split()
        for name, n in (("a.txt", 700), ("b.txt", 500)):
            with open(os.path.join(d, name), "w") as f:
                f.write(" ".join(words[(i * 7 + len(name)) % len(words)] for i in range(n)))
        with open(os.path.join(d, "recipe.yaml"), "w") as f:
            f.write(RECIPE.format(dir=d))
        metrics = os.path.join(d, "m.jsonl")
        r = subprocess.run([graft, "train", "--recipe", os.path.join(d, "recipe.yaml"),
                            "--metrics-out", metrics], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        print(r.stdout)
        assert r.returncode == 0, f"graft train exited {r.returncode}"

        files = [f for f in os.listdir(os.path.join(d, "tb")) if "tfevents" in f]
        assert len(files) == 1, files
        records = check_framing(os.path.join(d, "tb", files[0]))
        acc = EventAccumulator(os.path.join(d, "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        assert acc.file_version == 2.0, acc.file_version  # parsed from "brain.Event:2"

        rows = [json.loads(line) for line in open(metrics)]
        assert records == 1 + len(rows), (records, len(rows))
        tags = acc.Tags()["scalars"]
        for tag in TAGS:
            want = {j["step"]: j[tag] for j in rows if j.get(tag) is not None}
            assert want, f"no {tag} in the metrics"
            assert tag in tags, f"no {tag} scalar in the events (tags: {tags})"
            got = {e.step: e.value for e in acc.Scalars(tag)}
            assert sorted(got) == sorted(want), f"{tag}: steps {sorted(got)} vs {sorted(want)}"
            for step, v in want.items():
                f32 = struct.unpack("f", struct.pack("f", v))[0]
                assert math.isclose(got[step], f32, rel_tol=1e-6, abs_tol=1e-12), \
                    f"{tag} at step {step}: events {got[step]} vs metrics {v}"
            print(f"{tag}: {len(got)} values match at steps {sorted(got)}")
        eval_steps = sorted(e.step for e in acc.Scalars("eval_loss"))
        assert eval_steps == [3, 6, 7], eval_steps
    print("python.tensorboard: PASS")


if __name__ == "__main__":
    main()
