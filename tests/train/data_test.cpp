// Token shards, datasets, the byte and BPE tokenizers, data preparation and the sampler.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "framework/data/prepare.h"
#include "framework/data/sampler.h"
#include "framework/data/token_shard.h"
#include "framework/data/tokenizer.h"
#include "framework/data/tokenizer_bpe.h"
#include "framework/train/trainer.h"
#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::input_error;
using test::TempDir;

TEST(TokenShard, RoundTripU16AndU32) {
  TempDir d;
  const std::vector<int64_t> small = {0, 1, 257, 65535, 42};
  const std::vector<int64_t> big = {0, 65536, 4000000000ll, 7};
  write_token_shard(d / "a.bin", small, 2);
  write_token_shard(d / "b.bin", big, 4);
  EXPECT_EQ(std::filesystem::file_size(d / "a.bin"), 32u + 5 * 2);
  auto a = TokenShard::open(d / "a.bin");
  auto b = TokenShard::open(d / "b.bin");
  ASSERT_EQ(a->size(), 5);
  ASSERT_EQ(b->size(), 4);
  EXPECT_EQ(a->token_bytes(), 2);
  std::vector<int64_t> got(5);
  a->read(0, 5, got.data());
  EXPECT_EQ(got, small);
  got.resize(4);
  b->read(0, 4, got.data());
  EXPECT_EQ(got, big);
}

TEST(TokenShard, HeaderErrorsNameTheFile) {
  TempDir d;
  EXPECT_NE(input_error([&] {
              write_token_shard(d / "x.bin", {70000}, 2);
            }).find("token 0 = 70000 does not fit in 16 bits"),
            std::string::npos);
  write_token_shard(d / "ok.bin", {1, 2, 3}, 2);
  std::string bytes;
  {
    std::ifstream f(d / "ok.bin", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  test::write_text(d / "short.bin", bytes.substr(0, 20));
  EXPECT_NE(input_error([&] { TokenShard::open(d / "short.bin"); }).find("short.bin: 20 bytes"),
            std::string::npos);
  test::write_text(d / "trunc.bin", bytes.substr(0, bytes.size() - 1));
  EXPECT_NE(input_error([&] {
              TokenShard::open(d / "trunc.bin");
            }).find("header says 3 tokens of 2 bytes but the file has 37 bytes"),
            std::string::npos);
  std::string magic = bytes;
  magic[0] = 'X';
  test::write_text(d / "magic.bin", magic);
  EXPECT_NE(input_error([&] { TokenShard::open(d / "magic.bin"); }).find("magic"),
            std::string::npos);
  std::string version = bytes;
  version[8] = 9;
  test::write_text(d / "version.bin", version);
  EXPECT_NE(input_error([&] {
              TokenShard::open(d / "version.bin");
            }).find("token shard version 9, expected 1"),
            std::string::npos);
  std::string width = bytes;
  width[12] = 3;
  test::write_text(d / "width.bin", width);
  EXPECT_NE(input_error([&] {
              TokenShard::open(d / "width.bin");
            }).find("bytes per token = 3, expected 2 or 4"),
            std::string::npos);
}

TEST(ByteTokenizer, RoundTripsEveryByte) {
  ByteTokenizer t;
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  auto ids = t.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  EXPECT_EQ(ids[200], 200);
  EXPECT_EQ(t.decode(ids), all);
  EXPECT_EQ(t.decode({104, 105, ByteTokenizer::kEos}), "hi<eos>");
  EXPECT_EQ(t.vocab_size(), 258);
}

TEST(Prepare, ShardsDocumentsWithEosAndSpansShards) {
  TempDir d;
  test::write_text(d / "one.txt", "hello");
  test::write_text(d / "two.txt", "ab");
  ByteTokenizer tok;
  PrepareStats st = prepare_dataset({d / "one.txt", d / "two.txt"}, tok, d / "out", 3);
  EXPECT_EQ(st.documents, 2);
  EXPECT_EQ(st.tokens, 11);  // bos + 5 + eos + bos + 2 + eos
  EXPECT_EQ(st.shards, 4);
  TokenDataset ds = TokenDataset::open(d / "out");
  EXPECT_EQ(ds.size(), 11);
  EXPECT_EQ(ds.tokenizer(), "byte");
  EXPECT_EQ(ds.bos_id(), 256);
  std::vector<int64_t> all(11);
  ds.read(0, 11, all.data());
  EXPECT_EQ(all, (std::vector<int64_t>{256, 'h', 'e', 'l', 'l', 'o', 257, 256, 'a', 'b', 257}));
  std::vector<int64_t> mid(4);
  ds.read(2, 4, mid.data());  // crosses the shard boundary at 3
  EXPECT_EQ(mid, (std::vector<int64_t>{'e', 'l', 'l', 'o'}));
  // A shard that disagrees with meta.json is reported.
  std::filesystem::remove(d / "out/shard-00002.bin");
  EXPECT_NE(input_error([&] { TokenDataset::open(d / "out"); }).find("shard-00002.bin"),
            std::string::npos);
}

TEST(Prepare, CacheIsReusedAndKeyedOnContent) {
  TempDir d;
  test::write_text(d / "t.txt", test::sample_text(500));
  DataConfig c;
  c.files = {d / "t.txt"};
  c.cache_dir = d / "cache";
  bool fresh = false;
  const std::string a = ensure_dataset(c, &fresh);
  EXPECT_TRUE(fresh);
  const std::string b = ensure_dataset(c, &fresh);
  EXPECT_FALSE(fresh);
  EXPECT_EQ(a, b);
  test::write_text(d / "t.txt", test::sample_text(700));
  const std::string e = ensure_dataset(c, &fresh);
  EXPECT_TRUE(fresh);
  EXPECT_NE(a, e);
}

class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<int64_t> tokens(1000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int64_t>(i % 250);
    write_token_shard(dir_ / "shard-00000.bin", tokens, 2);
    nlohmann::json meta = {{"format", "graft-tokens"},
                           {"version", 1},
                           {"tokenizer", "byte"},
                           {"vocab_size", 258},
                           {"eos_id", 257},
                           {"tokens", 1000},
                           {"shards", {"shard-00000.bin"}}};
    test::write_text(dir_ / "meta.json", meta.dump());
    data_ = std::make_unique<TokenDataset>(TokenDataset::open(dir_.path()));
  }
  TempDir dir_;
  std::unique_ptr<TokenDataset> data_;
};

TEST_F(SamplerTest, SameSeedSameSequencesOtherSeedOthers) {
  Sampler a(data_.get(), {16, 7, 0, 1}), b(data_.get(), {16, 7, 0, 1}),
      c(data_.get(), {16, 8, 0, 1});
  Tensor x = a.next(4).input_ids, y = b.next(4).input_ids, z = c.next(4).input_ids;
  EXPECT_EQ(x.to_f32_vector(), y.to_f32_vector());
  EXPECT_NE(x.to_f32_vector(), z.to_f32_vector());
  EXPECT_EQ(a.position(), 4u);
}

TEST_F(SamplerTest, WindowsAreContiguousTextAndAnEpochCoversEachOnce) {
  Sampler s(data_.get(), {16, 3, 0, 1});
  ASSERT_EQ(s.windows_per_epoch(), 62);  // floor((1000 - 1) / 16)
  std::set<int64_t> starts;
  for (int64_t g = 0; g < 62; ++g) {
    std::vector<int64_t> seq(17);  // 16 inputs and the last target
    s.sequence(g, seq.data());
    for (int i = 1; i < 17; ++i) EXPECT_EQ(seq[i], (seq[i - 1] + 1) % 250);
    starts.insert(seq[0]);
  }
  // Window starts differ by multiples of 16 within an epoch: 62 distinct windows.
  std::set<std::vector<int64_t>> distinct;
  for (int64_t g = 0; g < 62; ++g) {
    std::vector<int64_t> seq(17);
    s.sequence(g, seq.data());
    distinct.insert(seq);
  }
  EXPECT_GE(distinct.size(), 50u);  // values repeat every 250 tokens, so a few windows coincide
}

TEST_F(SamplerTest, ResumeFromPositionContinuesExactly) {
  Sampler a(data_.get(), {16, 5, 0, 1});
  for (int i = 0; i < 40; ++i) a.next(3);  // past the first epoch (62 windows)
  LmInputs expect = a.next(3);
  Sampler b(data_.get(), {16, 5, 0, 1});
  b.set_position(120);
  LmInputs got = b.next(3);
  EXPECT_EQ(got.input_ids.to_f32_vector(), expect.input_ids.to_f32_vector());
  EXPECT_EQ(got.targets.to_f32_vector(), expect.targets.to_f32_vector());
}

TEST_F(SamplerTest, RanksReadDisjointSlicesOfTheGlobalBatch) {
  Sampler one(data_.get(), {16, 5, 0, 1});
  Sampler r0(data_.get(), {16, 5, 0, 2}), r1(data_.get(), {16, 5, 1, 2});
  for (int step = 0; step < 3; ++step) {
    auto g = one.next(4).targets.to_f32_vector();
    auto a = r0.next(2).targets.to_f32_vector();
    auto b = r1.next(2).targets.to_f32_vector();
    std::vector<float> joined = a;
    joined.insert(joined.end(), b.begin(), b.end());
    EXPECT_EQ(joined, g);
    EXPECT_NE(a, b);
  }
  EXPECT_EQ(r0.position(), r1.position());
}

TEST_F(SamplerTest, TooLittleDataIsAnInputError) {
  EXPECT_NE(input_error([&] {
              Sampler s(data_.get(), {1000, 5, 0, 1});
            }).find("holds 1000 tokens, fewer than data.seq_len + 1 = 1001"),
            std::string::npos);
}

// A byte-level BPE tokenizer.json written here: the full GPT-2 byte alphabet as the base
// vocabulary plus merges "h e" -> "he", "l l" -> "ll", "he ll" -> "hell", "Ġ w" -> "Ġw".
std::string write_bpe(const std::string& path) {
  nlohmann::json vocab = nlohmann::json::object();
  int k = 0;
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80)
      s.push_back(static_cast<char>(cp));
    else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    vocab[utf8(printable ? b : 256 + k++)] = b;  // id = byte value
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["\xC4\xA0w"] = 259;  // "Ġw"
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"h e", "l l", "he ll", nlohmann::json::array({"\xC4\xA0", "w"})}}}},
      {"added_tokens", {{{"id", 260}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  test::write_text(path, j.dump());
  return path;
}

TEST(BpeTokenizer, EncodesWithMergesByRankAndDecodesBack) {
  TempDir d;
  auto tok = BpeTokenizer::load(write_bpe(d / "tokenizer.json"));
  EXPECT_EQ(tok->vocab_size(), 261);
  EXPECT_EQ(tok->eos_id(), 260);
  // "hello" -> h e l l o -> he l l o -> he ll o -> hell o
  EXPECT_EQ(tok->encode("hello"), (std::vector<int64_t>{258, 'o'}));
  // " world" is one pre-token: Ġ w o r l d -> Ġw o r l d
  EXPECT_EQ(tok->encode("hello world<|endoftext|>hi"),
            (std::vector<int64_t>{258, 'o', 259, 'o', 'r', 'l', 'd', 260, 'h', 'i'}));
  const std::string text = "hello, world!\n  tabs\tand 123456 caf\xC3\xA9 it's";
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
  auto via_factory = make_tokenizer(d / "tokenizer.json");
  EXPECT_EQ(via_factory->encode("hello"), tok->encode("hello"));
}

TEST(BpeTokenizer, RejectsWhatItCannotUse) {
  TempDir d;
  test::write_text(d / "wp.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_NE(input_error([&] {
              BpeTokenizer::load(d / "wp.json");
            }).find("wp.json: model.type = WordPiece is not supported"),
            std::string::npos);
  test::write_text(d / "bad.json", "{");
  EXPECT_NE(input_error([&] { BpeTokenizer::load(d / "bad.json"); }).find("bad.json"),
            std::string::npos);
  EXPECT_NE(input_error([&] { make_tokenizer(d / "none.json"); }).find("no such tokenizer file"),
            std::string::npos);
}

}  // namespace
}  // namespace graft

namespace graft {
namespace {

// A run with an HF tokenizer.json keeps a copy in its checkpoint, and `graft export` puts it
// beside the exported weights (transformers' AutoTokenizer reads it from there).
TEST(BpeTokenizer, ExportCarriesTheTokenizerJson) {
  TempDir d;
  const std::string tok = write_bpe(d / "tokenizer.json");
  std::ostringstream quiet;
  TrainOptions opt;
  opt.out = &quiet;
  Trainer(test::micro(d.path(),
                      {"data.tokenizer=" + tok, "model.config.vocab_size=264", "train.steps=2",
                       "schedule.warmup_steps=1", "checkpoint.dir=" + (d / "ck")}),
          opt)
      .run();
  const std::string cmd = ::graft::test::graft_binary() + " export --checkpoint " + (d / "ck") +
                          " --out " + (d / "hf") + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream a(tok), b(d / "hf/tokenizer.json");
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  ASSERT_FALSE(sa.str().empty());
  EXPECT_EQ(sb.str(), sa.str());
}

}  // namespace
}  // namespace graft
