// The tokenizer.json pieces one by one: regex Split (Unicode classes), split behaviours,
// ByteLevel, Metaspace, BPE byte fallback and unk, added tokens, UTF-8 repair, and the errors for
// what is not supported. tokenizer.hf_parity (hf_parity.sh) compares whole tokenizers with the
// Hugging Face package.
#include "framework/data/tokenizer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "framework/data/tokenizer_bpe.h"
#include "framework/data/tokenizer_pre.h"
#include "framework/data/tokenizer_utf8.h"
#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using nlohmann::json;
using test::input_error;
using test::TempDir;
using Strings = std::vector<std::string>;

const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

Strings pre_tokenize(const json& j, const std::string& text, bool at_start = true) {
  auto pre = tok::make_pre_tokenizer(j, "t.json", "pre_tokenizer");
  std::vector<tok::Piece> p{{text, at_start}};
  pre->apply(p);
  Strings out;
  for (const auto& x : p) out.push_back(x.text);
  return out;
}

json split(const std::string& pattern, const char* behavior, bool regex = true,
           bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{regex ? "Regex" : "String", pattern}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(TokenizerPre, Llama3RegexUsesUnicodeClasses) {
  const json j = split(kLlama3, "Isolated");
  EXPECT_EQ(pre_tokenize(j, "Hello world, it's 12345!\n\n  x"),
            (Strings{"Hello", " world", ",", " it", "'s", " ", "123", "45", "!\n\n", " ", " x"}));
  // Greek and CJK are letters, Arabic-Indic digits are numbers, "«" and "—" are neither.
  EXPECT_EQ(pre_tokenize(j, "Καλημέρα κόσμε 你好 ١٢٣٤ «ok»—"),
            (Strings{"Καλημέρα", " κόσμε", " 你好", " ", "١٢٣", "٤", " «", "ok", "»—"}));
  // Case-insensitive contractions; an ideographic space is not a letter: it leads the word.
  EXPECT_EQ(pre_tokenize(j, "IT'S\u3000x"), (Strings{"IT", "'S", "\u3000x"}));
}

TEST(TokenizerPre, SplitBehavioursMatchHuggingFace) {
  // pre_tokenizers/split.rs tests, "How are you doing?" split on " ".
  const std::string t = "How are you doing?";
  EXPECT_EQ(pre_tokenize(split(" ", "Removed", false), t),
            (Strings{"How", "are", "you", "doing?"}));
  EXPECT_EQ(pre_tokenize(split(" ", "Isolated", false), t),
            (Strings{"How", " ", "are", " ", "you", " ", "doing?"}));
  EXPECT_EQ(pre_tokenize(split(" ", "MergedWithPrevious", false), t),
            (Strings{"How ", "are ", "you ", "doing?"}));
  EXPECT_EQ(pre_tokenize(split(" ", "MergedWithNext", false), t),
            (Strings{"How", " are", " you", " doing?"}));
  EXPECT_EQ(pre_tokenize(split("-", "Contiguous", false), "a--b-c"),
            (Strings{"a", "--", "b", "-", "c"}));
  // invert: the words are the matches, the spaces what lies between.
  EXPECT_EQ(pre_tokenize(split(R"(\w+)", "Removed", true, true), t),
            (Strings{"How", "are", "you", "doing"}));
  // A literal pattern is not a regex.
  EXPECT_EQ(pre_tokenize(split(".", "Removed", false), "a.b+c"), (Strings{"a", "b+c"}));
}

TEST(TokenizerPre, ByteLevelMapsBytesAndAddsThePrefixSpace) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  // "Ġ" is the space, "Ã©" the two bytes of "é".
  EXPECT_EQ(pre_tokenize(bl, "hi café"), (Strings{"Ġhi", "ĠcafÃ©"}));
  const json no_regex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(pre_tokenize(no_regex, "a b\n"), (Strings{"aĠbĊ"}));
}

TEST(TokenizerPre, MetaspaceReplacesPrependsAndSplits) {
  json m = {{"type", "Metaspace"},
            {"replacement", "\u2581"},
            {"prepend_scheme", "always"},
            {"split", true}};
  EXPECT_EQ(pre_tokenize(m, "Hello  world"), (Strings{"▁Hello", "▁", "▁world"}));
  m["prepend_scheme"] = "first";
  EXPECT_EQ(pre_tokenize(m, "Hello world", /*at_start=*/false), (Strings{"Hello", "▁world"}));
  EXPECT_EQ(pre_tokenize(m, "Hello world", /*at_start=*/true), (Strings{"▁Hello", "▁world"}));
  m["prepend_scheme"] = "never";
  m["split"] = false;
  EXPECT_EQ(pre_tokenize(m, "a b"), (Strings{"a▁b"}));
}

// A SentencePiece-style tokenizer.json: <unk>, "▁", a, b, ab, ▁ab, then <0x00>..<0xFF> at 6..261;
// Llama 2's normalizer and decoder; <s>, </s> special, "[T]" a normalized added token, "<m>" a
// special token with lstrip, rstrip and single_word.
json sentencepiece(bool byte_fallback, bool fuse_unk) {
  json vocab = {{"<unk>", 0}, {"\u2581", 1}, {"a", 2}, {"b", 3}, {"ab", 4}, {"\u2581ab", 5}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 6 + b;
  }
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}};
  return {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({"a b", json::array({"▁", "ab"})})},
        {"unk_token", "<unk>"},
        {"byte_fallback", byte_fallback},
        {"fuse_unk", fuse_unk}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "▁"}}, replace})}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"added_tokens",
       json::array({{{"id", 262}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
                    {{"id", 263}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
                    {{"id", 264}, {"content", "[T]"}, {"special", false}, {"normalized", true}},
                    {{"id", 265},
                     {"content", "<m>"},
                     {"special", true},
                     {"normalized", false},
                     {"lstrip", true},
                     {"rstrip", true},
                     {"single_word", true}}})}};
}

std::unique_ptr<BpeTokenizer> load(const TempDir& d, const json& j) {
  test::write_text(d / "tokenizer.json", j.dump());
  return BpeTokenizer::load(d / "tokenizer.json");
}

TEST(TokenizerBpe, ByteFallbackSpellsUnknownCharactersInBytes) {
  TempDir d;
  auto t = load(d, sentencepiece(true, false));
  EXPECT_EQ(t->vocab_size(), 266);
  EXPECT_EQ(t->eos_id(), 263);
  EXPECT_EQ(t->bos_id(), 262);
  // "▁ab▁é": a b -> ab, ▁ ab -> ▁ab; é = C3 A9.
  EXPECT_EQ(t->encode("ab é"), (std::vector<int64_t>{5, 1, 6 + 0xC3, 6 + 0xA9}));
  EXPECT_EQ(t->decode(t->encode("ab é")), "ab é");
  // Half a character decodes to U+FFFD, one per byte token.
  EXPECT_EQ(t->decode({2, 6 + 0xC3, 3}), "a\uFFFDb");
}

TEST(TokenizerBpe, UnknownCharactersFuseWhenAsked) {
  TempDir d;
  EXPECT_EQ(load(d, sentencepiece(false, false))->encode("aéé"),
            (std::vector<int64_t>{1, 2, 0, 0}));
  EXPECT_EQ(load(d, sentencepiece(false, true))->encode("aéé"), (std::vector<int64_t>{1, 2, 0}));
}

TEST(TokenizerBpe, AddedTokensAreSplitOutFirst) {
  TempDir d;
  auto t = load(d, sentencepiece(true, false));
  // Each stretch between added tokens is normalized on its own (HF prepends "▁" to each).
  EXPECT_EQ(t->encode("ab<s>ab</s>"), (std::vector<int64_t>{5, 262, 5, 263}));
  // A normalized added token matches its normalized form ("▁[T]" under Prepend).
  EXPECT_EQ(t->encode("[T]"), (std::vector<int64_t>{264}));
  // lstrip / rstrip take the spaces around; single_word refuses a match inside a word.
  EXPECT_EQ(t->encode("ab  <m>  ab"), (std::vector<int64_t>{5, 265, 5}));
  EXPECT_EQ(t->encode("a<m>")[0], 1);  // "▁a<m>" stays text: "<" is spelled in bytes
  EXPECT_EQ(t->encode("ab\n<m>"), (std::vector<int64_t>{5, 265}));  // a newline is no word
  EXPECT_EQ(t->decode({5, 262, 5}), "ab<s> ab");
}

TEST(TokenizerBpe, InvalidUtf8IsEncodedNotDropped) {
  TempDir d;
  auto t = load(d, sentencepiece(true, false));
  EXPECT_EQ(t->encode("a\xFF"), (std::vector<int64_t>{1, 2, 6 + 0xFF}));
}

TEST(TokenizerUtf8, LossyMatchesRust) {
  EXPECT_EQ(tok::utf8_lossy("a\xF0\x9F\x98"
                            "b"),
            "a\uFFFDb");                                             // a truncated 4-byte sequence
  EXPECT_EQ(tok::utf8_lossy("\xC0\x80"), "\uFFFD\uFFFD");            // overlong: two errors
  EXPECT_EQ(tok::utf8_lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // a surrogate
  EXPECT_EQ(tok::utf8_lossy("ok \xE2\x82\xAC"), "ok €");
}

TEST(TokenizerErrors, UnsupportedPartsNameTheFileAndKey) {
  TempDir d;
  json j = sentencepiece(true, false);
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(input_error([&] { load(d, j); }).find("tokenizer.json: model.type = WordPiece"),
            std::string::npos);
  j = sentencepiece(true, false);
  j["normalizer"]["normalizers"][1] = {{"type", "Precompiled"}};
  EXPECT_NE(input_error([&] {
              load(d, j);
            }).find("normalizer.normalizers[1].type = Precompiled is not supported"),
            std::string::npos);
  j = sentencepiece(true, false);
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({split("x", "Isolated", true), {{"type", "Whitespace"}}})}};
  EXPECT_NE(input_error([&] {
              load(d, j);
            }).find("pre_tokenizer.pretokenizers[1].type = Whitespace is not supported"),
            std::string::npos);
  j = sentencepiece(true, false);
  j["pre_tokenizer"] = split("(", "Isolated", true);
  EXPECT_NE(input_error([&] { load(d, j); }).find("pre_tokenizer.pattern: missing closing"),
            std::string::npos);
  j = sentencepiece(true, false);
  j["model"]["merges"][0] = "a c";
  EXPECT_NE(input_error([&] { load(d, j); }).find("model.merges[0]"), std::string::npos);
}

TEST(TokenizerCli, EncodesDecodesAndRejectsWithExitCode2) {
  TempDir d;
  json j = sentencepiece(true, false);
  test::write_text(d / "tokenizer.json", j.dump());
  test::write_text(d / "text.txt", "ab é\n\nab\n");
  const std::string bin = ::graft::test::graft_binary();
  auto run = [&](const std::string& args, int* code) {
    std::string out;
    FILE* p = ::popen((bin + " tokenize " + args + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  };
  int code = -1;
  const std::string tj = d / "tokenizer.json";
  EXPECT_EQ(run("--tokenizer " + tj + " --text " + (d / "text.txt"), &code), "5 1 201 175\n\n5\n");
  EXPECT_EQ(code, 0);
  test::write_text(d / "ids.txt", "5 1 201 175\n\n5\n");
  EXPECT_EQ(run("--tokenizer " + tj + " --decode --text " + (d / "ids.txt"), &code),
            "ab é\n\nab\n");
  test::write_text(d / "bad_ids.txt", "5\n5 x\n");
  const std::string bad =
      run("--tokenizer " + tj + " --decode --text " + (d / "bad_ids.txt"), &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(bad.find("bad_ids.txt:2: 'x' is not a token id (expected 0..265)"), std::string::npos)
      << bad;
  j["model"]["type"] = "Unigram";
  test::write_text(d / "unigram.json", j.dump());
  const std::string err = run("--tokenizer " + (d / "unigram.json"), &code);
  EXPECT_EQ(code, 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("unigram.json: model.type = Unigram is not supported"), std::string::npos)
      << err;
}

}  // namespace
}  // namespace graft
