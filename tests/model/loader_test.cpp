// HF checkpoint loading: every problem of a checkpoint reported in one error, dtype conversion,
// and the memory bound (one shard mapped at a time).
#include <cmath>
#include <filesystem>

#include "framework/io/safetensors.h"
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "tests/model/shard_util.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

using test::TempDir;

// A tiny Llama exported to `dir` in small shards; returns its HF tensors.
std::vector<std::pair<std::string, Tensor>> export_tiny(const std::string& dir, bool te = false) {
  auto m = test::tiny_model("llama", te, 11);
  export_hf_checkpoint(*m, dir, {.max_shard_bytes = 4096, .dtype = DType::kF32});
  return export_hf_tensors(*m);
}

// Writes `tensors` as a checkpoint in `dir` with the tiny Llama config.
void write_checkpoint(const std::string& dir,
                      const std::vector<std::pair<std::string, Tensor>>& t) {
  std::filesystem::create_directories(dir);
  write_hf_shards(dir, t, 4096);
  std::ofstream(dir + "/config.json") << find_architecture("llama", "")->tiny_config().dump();
}

std::vector<std::pair<std::string, Tensor>> without(std::vector<std::pair<std::string, Tensor>> t,
                                                    const std::set<std::string>& names) {
  std::erase_if(t, [&](const auto& p) { return names.count(p.first) > 0; });
  return t;
}

std::string load_error(const std::string& dir, bool te = false) {
  ModelConfig c = load_hf_config(dir + "/config.json");
  auto m = test::with_layers(te, c, [&] { return build_model(c); });
  try {
    load_hf_weights(*m, dir);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "loading " << dir << " did not fail";
  return "";
}

void expect_contains(const std::string& msg, const std::vector<std::string>& parts) {
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << p << " not in: " << msg;
}

TEST(HfLoader, MissingTensors) {
  TempDir d;
  auto t = export_tiny(d.sub("a"));
  write_checkpoint(d.sub("b"), without(t, {"model.layers.0.self_attn.k_proj.weight",
                                           "model.layers.1.mlp.down_proj.bias", "lm_head.weight"}));
  expect_contains(load_error(d.sub("b")),
                  {"3 missing tensors", "model.layers.0.self_attn.k_proj.weight",
                   "model.layers.1.mlp.down_proj.bias", "lm_head.weight"});
}

TEST(HfLoader, ExtraAndWrongShapeAndDtype) {
  TempDir d;
  auto t = export_tiny(d.sub("a"));
  t.emplace_back("model.layers.0.self_attn.extra.weight", Tensor::zeros({3, 4}, DType::kF32));
  t.emplace_back("model.rotary_emb.inv_freq", Tensor::zeros({4}, DType::kF32));  // dropped key
  for (auto& [name, v] : t) {
    if (name == "model.norm.weight") v = Tensor::zeros({33}, DType::kF32);
    if (name == "model.layers.1.input_layernorm.weight") v = Tensor::zeros({32}, DType::kI64);
  }
  write_checkpoint(d.sub("b"), t);
  const std::string msg = load_error(d.sub("b"));
  expect_contains(msg, {"1 unexpected tensors", "model.layers.0.self_attn.extra.weight",
                        "1 wrong shapes", "model.norm.weight is [33]", "expected [32]",
                        "1 wrong dtypes", "model.layers.1.input_layernorm.weight is I64"});
  EXPECT_EQ(msg.find("inv_freq"), std::string::npos) << "dropped keys are not errors: " << msg;
}

TEST(HfLoader, AllProblemsInOneError) {
  TempDir d;
  auto t = without(export_tiny(d.sub("a")), {"model.layers.1.mlp.up_proj.weight"});
  t.emplace_back("model.layers.7.mlp.up_proj.weight", Tensor::zeros({2, 2}, DType::kF32));
  for (auto& [name, v] : t)
    if (name == "model.embed_tokens.weight") v = Tensor::zeros({60, 32}, DType::kF32);
  write_checkpoint(d.sub("b"), t);
  expect_contains(load_error(d.sub("b")),
                  {"missing tensors: model.layers.1.mlp.up_proj.weight",
                   "unexpected tensors: model.layers.7.mlp.up_proj.weight",
                   "wrong shapes: model.embed_tokens.weight is [60, 32]", "expected [61, 32]"});
}

TEST(HfLoader, HalfOfFusedParameterMissing) {
  TempDir d;
  auto t = export_tiny(d.sub("a"), /*te=*/true);
  write_checkpoint(d.sub("b"), without(t, {"model.layers.0.mlp.up_proj.weight",
                                           "model.layers.1.self_attn.v_proj.weight"}));
  // The fused parameters are partly filled: gate_proj / q,k_proj loaded, up_proj / v_proj not.
  expect_contains(
      load_error(d.sub("b"), /*te=*/true),
      {"2 missing tensors", "model.layers.0.mlp.up_proj.weight",
       "model.layers.1.self_attn.v_proj.weight", "2 partly filled parameters",
       "has model.layers.0.mlp.gate_proj.weight", "lacks model.layers.0.mlp.up_proj.weight",
       "lacks model.layers.1.self_attn.v_proj.weight"});
}

TEST(HfLoader, MissingShardFiles) {
  TempDir d;
  export_tiny(d.path);
  ShardedCheckpoint ck = ShardedCheckpoint::open(d.path);
  ASSERT_GE(ck.shards().size(), 4u);
  std::vector<std::string> gone = {ck.shards()[1], ck.shards()[3]};
  std::vector<std::string> lost;
  for (const auto& [name, shard] : ck.weight_map())
    if (shard == gone[0] || shard == gone[1]) lost.push_back(name);
  for (const auto& g : gone) std::filesystem::remove(d.sub(g));
  std::vector<std::string> parts = {"2 missing shard files", gone[0], gone[1]};
  parts.insert(parts.end(), lost.begin(), lost.end());
  expect_contains(load_error(d.path), parts);
}

TEST(HfLoader, ConvertsHalfPrecision) {
  TempDir d;
  auto m = test::tiny_model("llama", false, 5);
  export_hf_checkpoint(*m, d.path, {.max_shard_bytes = 1 << 20, .dtype = DType::kBF16});
  auto loaded = load_hf_model(d.path);
  auto ref = export_hf_tensors(*m);
  auto got = export_hf_tensors(*loaded);
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    // Exactly the bf16 rounding of the original weights.
    Tensor rounded = ref[i].second.to(DType::kBF16).to(DType::kF32);
    EXPECT_TRUE(test::bit_equal(rounded, got[i].second)) << ref[i].first;
  }
}

// One shard is mapped at a time: the loader maps a shard, copies its tensors into the
// parameters, and checks that the mapping is gone (no view outlives it) before opening the next.
// The resident bytes of the mapping are measured by the kernel after each tensor (which is then
// released), so the peak is at most one shard and, with twelve shards, far below the checkpoint.
TEST(HfLoader, MapsOneShardAtATime) {
  const std::string dir = test::fixture_dir("llama-gqa");
  HfLoadStats s;
  auto m = load_hf_model(dir, {}, &s);
  uint64_t total = 0, largest = 0;
  int64_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("model-", 0) == 0 && e.path().extension() == ".safetensors") {
      total += e.file_size();
      largest = std::max<uint64_t>(largest, e.file_size());
      ++files;
    }
  }
  EXPECT_EQ(s.shards_read, files);
  EXPECT_EQ(s.total_shard_bytes, total);
  EXPECT_GT(s.peak_mapped_bytes, 0u);
  // Page-granular: a shard's last page is whole even where the file ends inside it.
  EXPECT_LE(s.peak_mapped_bytes, (largest + 4095) / 4096 * 4096);
  EXPECT_LT(s.peak_mapped_bytes * 3, total) << "the fixture's shards are small against the model";
  EXPECT_EQ(s.tensors_read, static_cast<int64_t>(export_hf_tensors(*m).size()));
  uint64_t params = 0;
  for (const auto& [name, p] : m->named_parameters()) params += p->value.nbytes();
  EXPECT_EQ(s.bytes_read, params) << "one process reads every tensor once";
  EXPECT_EQ(s.peak_buffer_bytes, 0u) << "CPU parameters are filled straight from the mapping";
}

// A one-layer Llama of hidden 64 with the given vocabulary, its config.json written into d.
ModelConfig one_layer_llama(const TempDir& d, int64_t vocab, bool tied) {
  nlohmann::json cfg = find_architecture("llama", "")->tiny_config();
  cfg["vocab_size"] = vocab;
  cfg["hidden_size"] = 64;
  cfg["intermediate_size"] = 128;
  cfg["num_attention_heads"] = 4;
  cfg["num_key_value_heads"] = 2;
  cfg["head_dim"] = 16;
  cfg["num_hidden_layers"] = 1;
  if (tied) cfg["tie_word_embeddings"] = true;
  std::filesystem::create_directories(d.path);
  std::ofstream(d.sub("config.json")) << cfg.dump();
  return load_hf_config(d.sub("config.json"));
}

// The initialisation is split over threads (a 1B model in seconds), and the values are those of
// the one sequential stream: pair p of a tensor takes splitmix64 draws 2p+1 and 2p+2 of the stream
// seeded by (seed, FNV of the name), Box-Muller. 4096 x 64 embeddings = 2^17 pairs, enough for two
// threads on a 2-core machine; the test's own sequential loop must give the same bits.
TEST(HfLoader, InitIsTheSequentialStreamWhateverTheThreads) {
  TempDir d;
  const ModelConfig c = one_layer_llama(d, 4096, false);
  auto m = build_model(c);
  init_hf_weights(*m, 5);
  const std::string name = "model.embed_tokens.weight";
  uint64_t s = 5;
  for (char ch : name) s = (s ^ static_cast<uint8_t>(ch)) * 0x100000001b3ULL;
  auto next = [&s] {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  Tensor w;
  for (const auto& [pname, p] : m->named_parameters())
    if (pname == "embed_tokens.weight") w = p->value;
  ASSERT_EQ(w.numel(), 4096 * 64);
  const float* got = w.data<float>();
  int64_t bad = 0;
  for (int64_t k = 0; k < w.numel(); k += 2) {
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = static_cast<double>(next() >> 11) / 9007199254740992.0;
    const double r = std::sqrt(-2.0 * std::log(u1)) * c.initializer_range;
    bad += got[k] != static_cast<float>(r * std::cos(2 * M_PI * u2));
    bad += got[k + 1] != static_cast<float>(r * std::sin(2 * M_PI * u2));
  }
  EXPECT_EQ(bad, 0);
}

// A rank reads only its slices, and the kernel agrees. A tied Llama with a 131072-token
// vocabulary (embed_tokens 32 MiB in f32; every other tensor at most 32 KiB) is loaded as rank 0
// of 4 with the vocabulary split (tests/model/shard_util.h): that rank must read 1/4 of the
// matrix. The mapped bytes resident at once, as /proc/self/smaps counts them, exceed the slice by
// what the kernel maps around the pages read: 64 KiB fault-around windows with small pages, and
// whole page-cache folios of up to 2 MiB where the file system caches large folios (ext4 on
// Linux 6.x maps them with one PMD). So the bound is the slice plus one 2 MiB folio at each end
// plus the header's 64 KiB: about 12 MiB, well under the 32 MiB a whole-tensor read would show.
// bytes_read is the rank's share exactly.
TEST(HfLoader, RankReadsOnlyItsSlices) {
  TempDir d;
  const ModelConfig c = one_layer_llama(d, 131072, true);
  {
    auto whole = build_model(c);
    init_hf_weights(*whole, 3);
    export_hf_checkpoint(*whole, d.path, {.max_shard_bytes = 40 << 20, .dtype = DType::kF32});
  }
  auto m = build_model(c);
  test::shard_model(*m, 0, 4);
  const HfLoadStats s = load_hf_weights(*m, d.path);
  uint64_t local = 0;  // rank 0 holds no padding rows: every local element is read
  for (const auto& [name, p] : m->named_parameters()) local += p->value.nbytes();
  EXPECT_EQ(s.bytes_read, local);
  const uint64_t matrix = 131072ull * 64 * 4, slice = 32769ull * 64 * 4;  // 131076 / 4 rows
  std::cout << "rank 0 of 4: bytes_read " << s.bytes_read << ", peak_mapped_bytes "
            << s.peak_mapped_bytes << " (slice " << slice << ", whole matrix " << matrix << ")\n";
  EXPECT_GT(s.peak_mapped_bytes, slice) << "the measurement sees the slice being read";
  EXPECT_LE(s.peak_mapped_bytes, slice + (4u << 20) + (64u << 10));
  EXPECT_LT(s.peak_mapped_bytes * 2, matrix) << "a whole-tensor read would be caught";
}

}  // namespace
}  // namespace graft
