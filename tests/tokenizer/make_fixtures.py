#!/usr/bin/env python3
"""Reference fixtures for graft's tokenizer.json reader, made with the Hugging Face `tokenizers`
package: trains small tokenizers of both BPE styles on a multilingual corpus, then writes, per
tokenizer, into OUT/<name>/:

  tokenizer.json   the tokenizer
  text.txt         the test text (one text per line)
  ids.txt          encode(line, add_special_tokens=False).ids per line, space-separated
  decoded.txt      decode(ids, skip_special_tokens=False) per line
  whole_ids.txt    the ids of the whole text.txt as one text (newlines included), one line
  whole_decoded.txt  their decode, as is
  random.txt, random_ids.txt, random_decoded.txt   the same for a 100 KB text of words drawn
                   from the corpus and the test text (seeded), as one text

Usage: make_fixtures.py OUT      (run by tests/tokenizer/hf_parity.sh)
"""
import json
import os
import random
import sys

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, trainers)

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
          r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
         r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """The quick brown fox jumps over the lazy dog. It's a well-known pangram; we'll use it.
Héllo wörld! Ça va très bien, merci. Façade, naïve, café, résumé, Ångström, Straße, smørrebrød.
Καλημέρα κόσμε! Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Ελληνικά γράμματα.
Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю. Русский язык.
你好，世界。这是一个测试。日本語のテキストです。カタカナとひらがな。한국어 텍스트입니다.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000 -17 +5 1e-9 0x1F.
def main(argv):\n    for i in range(10):\n        print(f"{i}: {argv[i]!r}")\n    return 0
if (a != b && c >= 0) { printf("%d\\n", a); } else { return -1; } // comment /* block */
<html><body class="x">Hello &amp; welcome</body></html>  {"key": [1, 2, 3], "ok": true}
Emoji: 😀 😂 🎉 👍 ❤️ 🚀 and text. Tabs\tand  double  spaces   and    more.
Mixed: English русский ελληνικά 中文 日本語 한국어 and numbers 12345 67890.
"""

TEXT = [
    "Hello world, it's 12345!",
    "Héllo wörld, ça va? Ünïcödé façade naïve café résumé Ångström",
    "<mask> opens this line (after a line that ends in a letter)",
    "decomposed: cafe\u0301 e\u0301le\u0300ve n\u0303o",
    "Καλημέρα κόσμε! ΣΊΣΥΦΟΣ ΟΔΟΣ ελληνικά",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "你好，世界。日本語のテキスト、カタカナ。한국어 텍스트 鬱龘",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️",
    "Numbers 1234567890 3.14159 1,000,000 ٣٤٥ ४२ ①② ½",
    "def f(x):\treturn x**2 + {'a': [1, 2]}  # comment",
    'if (a != b && c >= 0) { printf("%d\\n", a); }',
    "  leading and    multiple   spaces\t\ttabs   trailing   ",
    "\u00a0nbsp\u3000ideographic\u2009thin\u200bzero-width\u0085nel\x0bvt\x0cff",
    "It's I'M we'll they've she'd you're DON'T ſt",
    "carriage\rreturn\r and a lone \r",
    "start<|end_of_text|>end <s>x</s> [TOOL] call  <mask>  here <mask>x",
    "Mixed: English русский ελληνικά 中文 عربي עברית हिन्दी ไทย",
    "",
    " ",
    "\x01\x7f control",
]
# Lines with added tokens may not round-trip under SentencePiece-style prefixes (not in HF either).
ADDED = ("<|end_of_text|>", "<s>", "</s>", "[TOOL]", "<mask>")


def corpus():
    lines = CORPUS.splitlines()
    for k in range(30):
        for line in lines:
            yield line if k % 2 == 0 else line.lower()


def add_extra_tokens(tok):
    tok.add_tokens([AddedToken("[TOOL]", normalized=True)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True,
                                       single_word=True)])


def bytelevel(pre, normalizer=None, ignore_merges=False, vocab=800):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                  special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    add_extra_tokens(tok)
    return tok


def sentencepiece(byte_fallback=True, fuse_unk=True, vocab=600):
    """A Metaspace-trained BPE with <0xNN> byte tokens in its vocabulary (Llama 2 layout)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=byte_fallback, fuse_unk=fuse_unk))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False, limit_alphabet=120,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus(), trainer)
    j = json.loads(tok.to_str())
    vocab_map = j["model"]["vocab"]
    next_id = max(vocab_map.values()) + 1
    for b in range(256):
        if "<0x%02X>" % b not in vocab_map:
            vocab_map["<0x%02X>" % b] = next_id
            next_id += 1
    return j


def suffix_bpe():
    """A BPE with end_of_word_suffix and continuing_subword_prefix and no decoder."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>",
                               continuing_subword_prefix="##"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="removed")
    trainer = trainers.BpeTrainer(vocab_size=700, show_progress=False, end_of_word_suffix="</w>",
                                  continuing_subword_prefix="##", special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator(corpus(), trainer)
    add_extra_tokens(tok)
    return tok


def from_json(j, normalizer, pre, decoder):
    j = dict(j)
    j["normalizer"], j["pre_tokenizer"], j["decoder"] = normalizer, pre, decoder
    tok = Tokenizer.from_str(json.dumps(j))
    add_extra_tokens(tok)
    return tok


def fixtures():
    yield "bytelevel_llama3", bytelevel(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), ignore_merges=True), True
    yield "bytelevel_gpt2", bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False)), True
    yield "bytelevel_qwen_nfc", bytelevel(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        normalizer=normalizers.NFC()), False  # NFC changes the decomposed line
    yield "bytelevel_nfkc_lower_digits", bytelevel(pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True)]), normalizer=normalizers.Sequence([
            normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])), False
    yield "suffix_no_decoder", suffix_bpe(), False  # no decoder: tokens joined by spaces
    sp = sentencepiece()
    strip = {"type": "Strip", "content": " ", "start": 1, "stop": 0}
    replace_dec = {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}
    llama2_dec = {"type": "Sequence", "decoders": [replace_dec, {"type": "ByteFallback"},
                                                   {"type": "Fuse"}, strip]}
    replace_norm = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    yield "sp_llama2", from_json(sp, {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, replace_norm]}, None, llama2_dec), True
    yield "sp_metaspace", from_json(sp, None, {
        "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
             "split": True},
            {"type": "Fuse"}]}), False  # the Metaspace decoder drops the first token's "▁"s
    yield "sp_gemma", from_json(sp, replace_norm, None, {"type": "Sequence", "decoders": [
        replace_dec, {"type": "ByteFallback"}, {"type": "Fuse"}]}), True
    unk = sentencepiece(byte_fallback=False, fuse_unk=True)
    yield "sp_unk_fused", from_json(unk, None, {
        "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        llama2_dec), False  # unknown characters decode to <unk>


def random_text(size=100_000):
    """Words of the corpus and the test text in a seeded random order, with random separators."""
    rng = random.Random(1)
    words = (CORPUS + "\n".join(TEXT)).replace("\n", " ").split(" ")
    seps = [" ", " ", " ", "  ", "\n", "\t", "", "\n\n", " \n"]
    parts, n = [], 0
    while n < size:
        parts.append(rng.choice(words) + rng.choice(seps))
        n += len(parts[-1])
    return "".join(parts)


def main():
    out = sys.argv[1]
    text = "\n".join(TEXT) + "\n"
    rand = random_text()
    total = 0
    for name, tok, lossless in fixtures():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        ids, decoded = [], []
        for line in TEXT:
            e = tok.encode(line, add_special_tokens=False).ids
            s = tok.decode(e, skip_special_tokens=False)
            if lossless and not any(a in line for a in ADDED) and s != line:
                sys.exit(f"{name}: HF itself does not round-trip {line!r} -> {s!r}")
            ids.append(" ".join(map(str, e)))
            decoded.append(s)
            total += len(e)
        whole = tok.encode(text, add_special_tokens=False).ids
        total += len(whole)

        def write(fname, s):
            with open(os.path.join(d, fname), "w", encoding="utf-8", newline="") as f:
                f.write(s)
        write("text.txt", text)
        write("ids.txt", "\n".join(ids) + "\n")
        write("decoded.txt", "\n".join(decoded) + "\n")
        write("whole_ids.txt", " ".join(map(str, whole)) + "\n")
        write("whole_decoded.txt", tok.decode(whole, skip_special_tokens=False))
        rand_ids = tok.encode(rand, add_special_tokens=False).ids
        total += len(rand_ids)
        write("random.txt", rand)
        write("random_ids.txt", " ".join(map(str, rand_ids)) + "\n")
        write("random_decoded.txt", tok.decode(rand_ids, skip_special_tokens=False))
        print(f"{name}: vocab {tok.get_vocab_size()}, {len(TEXT)} lines", flush=True)
    print(f"reference ids: {total}")


if __name__ == "__main__":
    main()
