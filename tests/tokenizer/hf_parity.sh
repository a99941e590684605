#!/usr/bin/env bash
# ctest tokenizer.hf_parity: graft tokenize against the Hugging Face `tokenizers` package.
# make_fixtures.py trains byte-level and SentencePiece-style BPE tokenizers and writes the
# reference ids and decodes of a multilingual text (per line and whole) and of a 100 KB random
# text; every id and every decoded byte must match,
# line by line and for the whole text. Exit 77 (skip) only when the package cannot be installed.
#   hf_parity.sh GRAFT_BIN SOURCE_DIR
set -uo pipefail
graft="$1"
root="$2"
here="$root/tests/tokenizer"
if ! py="$("$root/scripts/py-tokenizers.sh")"; then
  echo "SKIP: the Hugging Face tokenizers package cannot be installed (see above)"
  exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/make_fixtures.py" "$tmp" || { echo "FAIL: make_fixtures.py"; exit 1; }
fail=0 ids=0 lines=0 n=0
check() {  # name what got expected
  if ! cmp -s "$2" "$3"; then
    echo "FAIL: $1: graft differs from Hugging Face (< graft, > HF; one id or line each):"
    diff <(tr ' ' '\n' <"$2") <(tr ' ' '\n' <"$3") | head -n 8 | cut -c 1-200
    fail=1
  fi
}
for d in "$tmp"/*/; do
  name="$(basename "$d")"
  tj="$d/tokenizer.json"
  "$graft" tokenize --tokenizer "$tj" --text "$d/text.txt" >"$d/g_ids.txt" 2>&1
  check "$name ids" "$d/g_ids.txt" "$d/ids.txt"
  "$graft" tokenize --tokenizer "$tj" --text "$d/ids.txt" --decode >"$d/g_decoded.txt" 2>&1
  check "$name decode" "$d/g_decoded.txt" "$d/decoded.txt"
  "$graft" tokenize --tokenizer "$tj" --text "$d/text.txt" --whole >"$d/g_whole_ids.txt" 2>&1
  check "$name whole-text ids" "$d/g_whole_ids.txt" "$d/whole_ids.txt"
  "$graft" tokenize --tokenizer "$tj" --text "$d/whole_ids.txt" --whole --decode \
    >"$d/g_whole_decoded.txt" 2>&1
  check "$name whole-text decode" "$d/g_whole_decoded.txt" "$d/whole_decoded.txt"
  "$graft" tokenize --tokenizer "$tj" --text "$d/random.txt" --whole >"$d/g_random_ids.txt" 2>&1
  check "$name random-text ids" "$d/g_random_ids.txt" "$d/random_ids.txt"
  "$graft" tokenize --tokenizer "$tj" --text "$d/random_ids.txt" --whole --decode \
    >"$d/g_random_decoded.txt" 2>&1
  check "$name random-text decode" "$d/g_random_decoded.txt" "$d/random_decoded.txt"
  n=$((n + 1))
  ids=$((ids + $(cat "$d/ids.txt" "$d/whole_ids.txt" "$d/random_ids.txt" | wc -w)))
  lines=$((lines + $(wc -l <"$d/text.txt")))
done
[ "$n" -gt 0 ] || { echo "FAIL: no fixtures"; exit 1; }
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "hf parity: $n tokenizers, $ids ids compared ($lines lines, then the test text and a 100 KB"\
  "random text whole, per tokenizer): all ids and decodes equal"
