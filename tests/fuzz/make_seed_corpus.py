#!/usr/bin/env python3
"""Writes the fuzz seed corpus: one seed per safetensors file under FIXTURES (recursive).

A seed is what safetensors_header_fuzz.cpp expects: the 8-byte little-endian size of the file's
data section (modulo 1 MiB), then the file's header JSON. Usage: make_seed_corpus.py FIXTURES OUT
"""
import os
import struct
import sys


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    count = 0
    for root, _, files in os.walk(fixtures):
        for name in sorted(files):
            if not name.endswith(".safetensors"):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                blob = f.read()
            (n,) = struct.unpack("<Q", blob[:8])
            header = blob[8:8 + n]
            data_size = (len(blob) - 8 - n) % (1 << 20)
            seed = os.path.basename(root) + "_" + name.replace(".safetensors", "")
            with open(os.path.join(out, seed), "wb") as f:
                f.write(struct.pack("<Q", data_size) + header)
            count += 1
    if count == 0:
        sys.exit(f"no .safetensors files under {fixtures}")
    print(f"wrote {count} seeds to {out}")


if __name__ == "__main__":
    main()
