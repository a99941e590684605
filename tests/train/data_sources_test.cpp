// Data sources end to end: JSONL (plain, .gz, .zst), mixture weights, idempotent and
// thread-count-independent preparation, SFT loss masks, document masking, the target count of
// an epoch, and one-line errors for bad inputs.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/data/prepare.h"
#include "framework/data/sampler.h"
#include "framework/data/sources.h"
#include "framework/data/token_shard.h"
#include "framework/train/trainer.h"
#include "tests/train/test_util.h"

#ifdef GRAFT_HAVE_ZSTD
#include <zstd.h>
#endif

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::input_error;
using test::TempDir;

constexpr int64_t kBos = ByteTokenizer::kBos, kEos = ByteTokenizer::kEos;

void write_gz(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

#ifdef GRAFT_HAVE_ZSTD
std::string zstd_bytes(const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
  return out;
}
#endif

DataSource source(const std::string& pattern, const std::string& type = "text", double weight = 1.0,
                  const std::string& field = "text") {
  DataSource s;
  s.path = pattern;
  s.files = expand_glob(pattern);
  s.type = type;
  s.weight = weight;
  s.field = field;
  return s;
}

std::vector<int64_t> all_tokens(const std::string& dir) {
  TokenDataset d = TokenDataset::open(dir);
  std::vector<int64_t> t(static_cast<size_t>(d.size()));
  d.read(0, d.size(), t.data());
  return t;
}

std::vector<int64_t> doc(const std::string& text) {
  std::vector<int64_t> t{kBos};
  for (unsigned char c : text) t.push_back(c);
  t.push_back(kEos);
  return t;
}

std::vector<int64_t> cat(std::vector<std::vector<int64_t>> docs) {
  std::vector<int64_t> t;
  for (auto& d : docs) t.insert(t.end(), d.begin(), d.end());
  return t;
}

TEST(Sources, JsonlPlainGzipAndZstdReadTheSameDocuments) {
  TempDir d;
  const std::string jsonl =
      "{\"body\": \"hello\", \"id\": 1}\n\n{\"body\": \"w\\u00f6rld\", \"id\": 2}\n";
  test::write_text(d / "a.jsonl", jsonl);
  write_gz(d / "a.jsonl.gz", jsonl);
  const auto expect = cat({doc("hello"), doc("w\xC3\xB6rld")});
  std::vector<std::string> names = {"a.jsonl", "a.jsonl.gz"};
#ifdef GRAFT_HAVE_ZSTD
  test::write_text(d / "a.jsonl.zst", zstd_bytes(jsonl));
  names.push_back("a.jsonl.zst");
#endif
  for (const auto& name : names) {
    PrepareStats st =
        prepare_sources({source(d / name, "text", 1, "body")}, "byte", d / (name + ".out"));
    EXPECT_EQ(st.documents, 2) << name;
    EXPECT_EQ(all_tokens(d / (name + ".out")), expect) << name;
  }
  // Plain text, also compressed: the whole file is one document.
  write_gz(d / "t.txt.gz", "plain\ntext");
  prepare_sources({source(d / "t.txt.gz")}, "byte", d / "t.out");
  EXPECT_EQ(all_tokens(d / "t.out"), doc("plain\ntext"));
}

TEST(Sources, PreparationIsIdempotentAndIndependentOfThreads) {
  TempDir d;
  std::string jsonl;
  for (int i = 0; i < 300; ++i)
    jsonl += nlohmann::json{{"text", test::sample_text(40 + i % 17, i)}}.dump() + "\n";
  test::write_text(d / "c.jsonl", jsonl);
  PrepareOptions one, many;
  one.threads = 1;
  many.threads = 4;
  many.chunk_bytes = 1000;  // many rounds
  many.shard_tokens = 777;
  PrepareStats a = prepare_sources({source(d / "c.jsonl")}, "byte", d / "one", one);
  PrepareStats b = prepare_sources({source(d / "c.jsonl")}, "byte", d / "many", many);
  EXPECT_FALSE(a.reused);
  EXPECT_GT(b.shards, 5);
  EXPECT_EQ(all_tokens(d / "one"), all_tokens(d / "many"));
  EXPECT_TRUE(prepare_sources({source(d / "c.jsonl")}, "byte", d / "one", one).reused);
  // Another field, weight or input content is another preparation.
  EXPECT_NE(dataset_key({source(d / "c.jsonl", "text", 2)}, "byte"),
            dataset_key({source(d / "c.jsonl")}, "byte"));
  test::write_text(d / "c.jsonl", jsonl + "{\"text\": \"more\"}\n");
  PrepareStats c = prepare_sources({source(d / "c.jsonl")}, "byte", d / "one", one);
  EXPECT_FALSE(c.reused);
  EXPECT_EQ(c.documents, 301);
  // A folder that is not a preparation is never overwritten.
  fs::create_directories(d / "mine");
  test::write_text(d / "mine/notes.txt", "keep");
  EXPECT_NE(input_error([&] {
              prepare_sources({source(d / "c.jsonl")}, "byte", d / "mine", one);
            }).find("refusing to overwrite"),
            std::string::npos);
}

// Weight w: floor(w) full passes plus each document once more with probability frac(w).
TEST(Sources, MixtureWeightsScaleEachSourcesDocuments) {
  TempDir d;
  auto write_docs = [&](const std::string& name, char c, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += nlohmann::json{{"text", std::string(9, c)}}.dump() + "\n";
    test::write_text(d / name, s);
  };
  write_docs("a.jsonl", 'a', 400);
  write_docs("b.jsonl", 'b', 400);
  write_docs("c.jsonl", 'c', 100);
  prepare_sources({source(d / "a.jsonl", "text", 1), source(d / "b.jsonl", "text", 0.25),
                   source(d / "c.jsonl", "text", 2.5)},
                  "byte", d / "mix");
  std::map<int64_t, int64_t> count;
  for (int64_t t : all_tokens(d / "mix")) ++count[t];
  EXPECT_EQ(count['a'], 400 * 9);
  // 0.25 · 400 = 100 documents expected; binomial sd ≈ 8.7: within ±30 (3.5 sd).
  EXPECT_NEAR(count['b'] / 9.0, 100.0, 30.0);
  EXPECT_NEAR(count['c'] / 9.0, 250.0, 20.0);  // 200 + Binomial(100, 0.5)
  EXPECT_EQ(count['c'] % 9, 0);
  std::ifstream f(d / "mix/meta.json");
  auto meta = nlohmann::json::parse(f);
  EXPECT_EQ(meta["sources"][2]["documents"].get<int64_t>() * 9, count['c']);
}

TEST(Sources, BadInputsAreOneLineNamingFileAndLine) {
  TempDir d;
  test::write_text(d / "trunc.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"cut he");
  EXPECT_NE(input_error([&] {
              prepare_sources({source(d / "trunc.jsonl")}, "byte", d / "o");
            }).find("trunc.jsonl:2: not a JSON record"),
            std::string::npos);
  test::write_text(d / "field.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"x\"}\n");
  EXPECT_NE(input_error([&] {
              prepare_sources({source(d / "field.jsonl")}, "byte", d / "o");
            }).find("field.jsonl:2: no field 'text'"),
            std::string::npos);
  test::write_text(d / "sft.jsonl", "{\"prompt\": \"p\"}\n");
  EXPECT_NE(input_error([&] {
              prepare_sources({source(d / "sft.jsonl", "sft")}, "byte", d / "o");
            }).find("sft.jsonl:1: no field 'completion'"),
            std::string::npos);
  std::string gz;
  write_gz(d / "g.jsonl.gz", std::string(5000, ' ') + "{\"text\": \"x\"}\n");
  {
    std::ifstream f(d / "g.jsonl.gz", std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(f), {});
  }
  test::write_text(d / "cut.jsonl.gz", gz.substr(0, gz.size() - 10));
  const std::string e =
      input_error([&] { prepare_sources({source(d / "cut.jsonl.gz")}, "byte", d / "o"); });
  EXPECT_NE(e.find("cut.jsonl.gz: corrupt or truncated gzip"), std::string::npos) << e;
#ifdef GRAFT_HAVE_ZSTD
  const std::string z = zstd_bytes(std::string(5000, ' ') + "{\"text\": \"x\"}\n");
  test::write_text(d / "cut.jsonl.zst", z.substr(0, z.size() - 4));
  EXPECT_NE(input_error([&] {
              prepare_sources({source(d / "cut.jsonl.zst")}, "byte", d / "o");
            }).find("cut.jsonl.zst: truncated zstd"),
            std::string::npos);
#endif
  test::write_text(d / "t.parquet", "PAR1");
  EXPECT_NE(
      input_error([&] { prepare_sources({source(d / "t.parquet")}, "byte", d / "o"); })
          .find("t.parquet: Parquet support is not built (Apache Arrow is not packaged for this "
                "platform); convert it with scripts/parquet-to-jsonl.py"),
      std::string::npos);
  for (const std::string& m :
       {input_error([&] { prepare_sources({source(d / "trunc.jsonl")}, "byte", d / "o"); })})
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(Sources, RecipeKeysAreCheckedAndTheTokenizerMustMatchTheShards) {
  TempDir d;
  test::write_text(d / "x.jsonl", nlohmann::json{{"text", test::sample_text(400)}}.dump() + "\n");
  const std::string sources = "data.sources=[{path: " + (d / "x.jsonl") + ", fieldd: body}]";
  std::string e = input_error([&] { test::micro(d.path(), {"data.text=[]", sources}); });
  EXPECT_NE(e.find("data.sources[0].fieldd: unknown key"), std::string::npos) << e;
  e = input_error(
      [&] { test::micro(d.path(), {"data.sources=[{path: " + (d / "x.jsonl") + "}]"}); });
  EXPECT_NE(e.find("exactly one of"), std::string::npos) << e;  // text is set as well
  e = input_error([&] {
    test::micro(d.path(),
                {"data.text=[]", "data.sources=[{path: " + (d / "x.jsonl") + ", weight: 0}]"});
  });
  EXPECT_NE(e.find("data.sources[0].weight = 0: expected > 0"), std::string::npos) << e;

  // Shards prepared with one tokenizer, a recipe naming another.
  test::write_text(d / "tok.json", "{}");
  nlohmann::json meta;
  prepare_sources({source(d / "x.jsonl")}, "byte", d / "shards");
  DataConfig c;
  c.prepared = d / "shards";
  c.tokenizer = d / "tok.json";
  e = input_error([&] { ensure_dataset(c); });
  EXPECT_NE(e.find("shards/meta.json: the shards were prepared with tokenizer byte (byte) but "
                   "data.tokenizer = " +
                   (d / "tok.json") + " (fnv1a64:"),
            std::string::npos)
      << e;
  c.tokenizer = "byte";
  EXPECT_EQ(ensure_dataset(c), d / "shards");
}

TEST(Sources, SftLossCoversOnlyCompletionsAndTheEos) {
  TempDir d;
  test::write_text(d / "s.jsonl",
                   "{\"prompt\": \"Q\", \"completion\": \"A\"}\n"
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                   "{\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
  prepare_sources({source(d / "s.jsonl", "sft")}, "byte", d / "out");
  TokenDataset ds = TokenDataset::open(d / "out");
  ASSERT_TRUE(ds.has_loss_mask());
  const std::string second = "<|user|>\nhi\n<|assistant|>\nyo\n";
  const auto expect = cat({doc("QA"), doc(second)});
  ASSERT_EQ(all_tokens(d / "out"), expect);
  std::vector<uint8_t> mask(expect.size());
  ds.read_loss_mask(0, ds.size(), mask.data());
  std::string counted;  // the tokens whose mask is 1, as text
  for (size_t i = 0; i < expect.size(); ++i)
    if (mask[i]) counted += expect[i] == kEos ? std::string("$") : std::string(1, char(expect[i]));
  EXPECT_EQ(counted, "A$yo\n$");
  // The sampler turns the mask into -100 targets: one window over the whole stream.
  Sampler s(&ds, {static_cast<int64_t>(expect.size()) - 1, 1, 0, 1, true});
  LmInputs b = s.next(1);
  const int64_t* t = b.targets.data<int64_t>();
  std::string got;
  for (int64_t i = 0; i < b.targets.numel(); ++i)
    if (t[i] != -100) got += t[i] == kEos ? std::string("$") : std::string(1, char(t[i]));
  EXPECT_EQ(got, "A$yo\n$");
  EXPECT_EQ(b.num_targets, 6);
}

// Every token of the stream but the first of each document (BOS) is a target exactly once per
// epoch; none is lost at the end of a window.
TEST(Sources, AnEpochTargetsEveryTokenOnceExceptDocumentStarts) {
  TempDir d;
  std::string jsonl;
  std::vector<std::vector<int64_t>> docs;
  for (int i = 0; i < 7; ++i) {
    const std::string text = test::sample_text(30 + 11 * i, i);
    jsonl += nlohmann::json{{"text", text}}.dump() + "\n";
    docs.push_back(doc(text));
  }
  test::write_text(d / "e.jsonl", jsonl);
  prepare_sources({source(d / "e.jsonl")}, "byte", d / "out");
  TokenDataset ds = TokenDataset::open(d / "out");
  const int64_t total = ds.size();
  for (int64_t seq_len : {int64_t{1}, int64_t{7}, total - 1}) {
    if ((total - 1) % seq_len != 0) continue;  // no slack: the epoch covers the whole stream
    Sampler s(&ds, {seq_len, 3, 0, 1, true});
    std::map<int64_t, int64_t> targets;
    int64_t counted = 0;
    for (int64_t w = 0; w < s.windows_per_epoch(); ++w) {
      LmInputs b = s.next(1);
      counted += b.num_targets;
      for (int64_t i = 0; i < seq_len; ++i)
        if (b.targets.data<int64_t>()[i] != -100) ++targets[b.targets.data<int64_t>()[i]];
    }
    EXPECT_EQ(counted, total - static_cast<int64_t>(docs.size())) << "seq_len " << seq_len;
    std::map<int64_t, int64_t> expect;
    for (const auto& dd : docs)
      for (size_t i = 1; i < dd.size(); ++i) ++expect[dd[i]];
    EXPECT_EQ(targets, expect) << "seq_len " << seq_len;
  }
  // A seq_len with slack: every counted target is still a real next token.
  Sampler s(&ds, {10, 3, 0, 1, false});
  EXPECT_EQ(s.windows_per_epoch(), (total - 1) / 10);
}

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override { trainer_ = std::make_unique<Trainer>(test::micro(dir_.path()), opt()); }
  static TrainOptions opt() {
    static std::ostringstream sink;
    TrainOptions o;
    o.out = &sink;
    return o;
  }
  CausalLM& model() { return trainer_->model(); }
  TempDir dir_;
  std::unique_ptr<Trainer> trainer_;
};

// Logits of two packed documents (positions restarting, document ids) equal each one's own.
TEST_F(ModelTest, DocumentMaskedPackingMatchesEachDocumentAlone) {
  const std::vector<int64_t> a = doc("abcd"), b = doc("xyz");
  const int64_t A = static_cast<int64_t>(a.size()), B = static_cast<int64_t>(b.size());
  std::vector<int64_t> ids, pos, seg;
  auto pack = [&](const std::vector<int64_t>& first, const std::vector<int64_t>& second) {
    for (size_t i = 0; i < first.size(); ++i)
      ids.push_back(first[i]), pos.push_back(i), seg.push_back(0);
    for (size_t i = 0; i < second.size(); ++i)
      ids.push_back(second[i]), pos.push_back(i), seg.push_back(1);
  };
  pack(a, b);
  pack(b, a);
  LmInputs li;
  li.input_ids = Tensor::from_vector(ids, {2, A + B});
  li.positions = Tensor::from_vector(pos, {2, A + B});
  li.segment_ids = Tensor::from_vector(seg, {2, A + B});
  const std::vector<float> packed = model().forward(li).to_f32_vector();
  const std::vector<float> la = model().forward(Tensor::from_vector(a, {1, A})).to_f32_vector();
  const std::vector<float> lb = model().forward(Tensor::from_vector(b, {1, B})).to_f32_vector();
  const int64_t V = 258, S = A + B;
  double worst = 0;
  for (int64_t t = 0; t < S; ++t) {
    for (int64_t v = 0; v < V; ++v) {
      const float row0 = packed[t * V + v], row1 = packed[(S + t) * V + v];
      const float alone0 = t < A ? la[t * V + v] : lb[(t - A) * V + v];
      const float alone1 = t < B ? lb[t * V + v] : la[(t - B) * V + v];
      worst = std::max({worst, std::fabs(double(row0 - alone0)), std::fabs(double(row1 - alone1))});
    }
  }
  EXPECT_LT(worst, 1e-5);
  // Without the document ids the second document sees the first: the logits differ.
  li.segment_ids = Tensor();
  const std::vector<float> leaky = model().forward(li).to_f32_vector();
  EXPECT_GT(std::fabs(leaky[(A + 1) * V] - packed[(A + 1) * V]), 1e-4);
}

// The loss is the mean of -log softmax(logits)[target] over the targets that are not -100.
TEST_F(ModelTest, MaskedLossIsTheMeanOverCountedTargets) {
  const std::vector<int64_t> ids = {kBos, 'Q', ':', ' ', 'a', 'b', kEos, kBos, 'c', 'd'};
  std::vector<int64_t> targets = {-100, -100, -100, 'a', 'b', kEos, -100, 'c', 'd', 'e'};
  LmInputs li;
  li.input_ids = Tensor::from_vector(ids, {2, 5});
  li.targets = Tensor::from_vector(targets, {2, 5});
  const std::vector<float> logits = model().forward(li).to_f32_vector();
  double sum = 0;
  int n = 0;
  for (size_t r = 0; r < ids.size(); ++r) {
    if (targets[r] == -100) continue;
    double m = -1e30, z = 0;
    for (int v = 0; v < 258; ++v) m = std::max(m, double(logits[r * 258 + v]));
    for (int v = 0; v < 258; ++v) z += std::exp(logits[r * 258 + v] - m);
    sum += m + std::log(z) - logits[r * 258 + targets[r]];
    ++n;
  }
  EXPECT_NEAR(model().forward_backward(li, false), sum / n, 1e-5);
}

TEST(Sources, TrainsOnAnSftAndTextMixtureWithDocumentMasks) {
  TempDir d;
  std::string sft, text;
  for (int i = 0; i < 40; ++i) {
    sft += nlohmann::json{{"prompt", "say " + std::to_string(i) + ": "},
                          {"completion", test::sample_text(20, i)}}
               .dump() +
           "\n";
    text += nlohmann::json{{"body", test::sample_text(60, 100 + i)}}.dump() + "\n";
  }
  test::write_text(d / "sft.jsonl", sft);
  write_gz(d / "text.jsonl.gz", text);
  std::ostringstream sink;
  TrainOptions opt;
  opt.out = &sink;
  Trainer t(test::micro(d.path(), {"data.text=[]", "data.document_mask=true", "train.steps=12",
                                   "data.sources=[{path: " + (d / "sft.jsonl") +
                                       ", type: sft}, {path: " + (d / "text.jsonl.gz") +
                                       ", field: body, weight: 0.5}]"}),
            opt);
  TrainResult r = t.run();
  ASSERT_EQ(r.steps.size(), 12u);
  for (const auto& s : r.steps) EXPECT_TRUE(std::isfinite(s.loss));
  EXPECT_LT(r.steps.back().loss, r.steps.front().loss);
}

}  // namespace
}  // namespace graft
