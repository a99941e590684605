// Reads every HF fixture checkpoint (tests/fixtures/hf, copied from transformers 5.17 output)
// and checks it against numbers obtained independently of graft.
//
// The expected element values were read with Python's struct module from the fixture files
// (parse the 8-byte length, json.loads the header, struct.unpack('<f'/'<q') the bytes), e.g.
//   n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); s, e = h[name]['data_offsets']
//   struct.unpack(f'<{(e-s)//4}f', b[8+n+s:8+n+e])
// and written here as the exact float32 values (printed with repr of the double).
// total_parameters and total_size come from each index's "metadata", written by transformers.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "framework/io/hf_checkpoint.h"
#include "tests/io/io_test_util.h"

namespace graft {
namespace {

struct FixtureExpect {
  std::string name;
  size_t num_shards, num_tensors;
  uint64_t total_parameters, total_size;
  int64_t hidden, vocab, kv_heads, head_dim;
  bool has_lm_head;                  // false when embeddings are tied (gemma)
  std::string k_proj_shard;          // shard of model.layers.1.self_attn.k_proj.weight
  double k_proj_first, k_proj_last;  // its first and last elements
  double norm_5;                     // model.norm.weight[5]
  int64_t input_ids_first[3];        // reference.safetensors input_ids[0, 0:3]
  double loss;                       // reference.safetensors loss[0]
};

const FixtureExpect kFixtures[] = {
    {"llama-gqa",
     12,
     21,
     90432,
     361728,
     64,
     128,
     2,
     16,
     true,
     "model-00007-of-00012.safetensors",
     0.0057265195064246655,
     -0.01912352629005909,
     0.8579102754592896,
     {47, 68, 25},
     4.8649163246154785},
    {"gemma-mqa",
     11,
     20,
     78144,
     312576,
     64,
     128,
     1,
     16,
     false,
     "model-00007-of-00011.safetensors",
     -0.02021804451942444,
     -0.010564180091023445,
     0.07436469197273254,
     {47, 68, 25},
     4.900472640991211},
    {"qwen3-qknorm",
     14,
     25,
     106944,
     427776,
     64,
     160,
     2,
     32,
     true,
     "model-00009-of-00014.safetensors",
     0.0008612788515165448,
     0.034520283341407776,
     1.0992175340652466,
     {15, 132, 121},
     5.1024394035339355},
};

void PrintTo(const FixtureExpect& x, std::ostream* os) { *os << x.name; }

class Fixture : public ::testing::TestWithParam<FixtureExpect> {};

TEST_P(Fixture, ReadsEveryShardWithKnownShapesAndValues) {
  const FixtureExpect& x = GetParam();
  const std::string dir = testing::fixtures_dir() + "/" + x.name;
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir);
  EXPECT_EQ(ck.shards().size(), x.num_shards);
  EXPECT_EQ(ck.weight_map().size(), x.num_tensors);
  ck.validate();

  // Sum over every tensor of every shard, one shard mapped at a time.
  uint64_t params = 0, bytes = 0;
  for (const std::string& shard : ck.shards()) {
    auto f = ck.open_shard(shard);
    for (const TensorInfo& t : f->tensors()) {
      EXPECT_EQ(t.dtype, DType::kF32) << t.name;
      params += static_cast<uint64_t>(shape_numel(t.shape));
      bytes += t.end - t.begin;
    }
  }
  EXPECT_EQ(params, x.total_parameters);
  EXPECT_EQ(bytes, x.total_size);

  // Shapes follow config.json.
  auto cfg = nlohmann::json::parse(testing::read_bytes(dir + "/config.json"));
  ASSERT_EQ(cfg["hidden_size"].get<int64_t>(), x.hidden);
  ASSERT_EQ(cfg["vocab_size"].get<int64_t>(), x.vocab);
  ASSERT_EQ(cfg["num_key_value_heads"].get<int64_t>(), x.kv_heads);
  ASSERT_EQ(cfg["head_dim"].get<int64_t>(), x.head_dim);
  auto emb_shard = ck.open_shard(ck.weight_map().at("model.embed_tokens.weight"));
  EXPECT_EQ(emb_shard->find("model.embed_tokens.weight")->shape, (Shape{x.vocab, x.hidden}));
  EXPECT_EQ(ck.weight_map().count("lm_head.weight"), x.has_lm_head ? 1u : 0u);

  const std::string k = "model.layers.1.self_attn.k_proj.weight";
  ASSERT_EQ(ck.weight_map().at(k), x.k_proj_shard);
  auto kf = ck.open_shard(x.k_proj_shard);
  Tensor kt = kf->tensor(k);
  EXPECT_EQ(kt.shape(), (Shape{x.kv_heads * x.head_dim, x.hidden}));
  EXPECT_EQ(kt.item({0, 0}), static_cast<float>(x.k_proj_first));
  EXPECT_EQ(kt.item({kt.size(0) - 1, x.hidden - 1}), static_cast<float>(x.k_proj_last));
  Tensor norm = ck.open_shard(ck.weight_map().at("model.norm.weight"))->tensor("model.norm.weight");
  EXPECT_EQ(norm.item({5}), static_cast<float>(x.norm_5));

  auto ref = SafetensorsFile::open(dir + "/reference.safetensors");
  Tensor ids = ref->tensor("input_ids");
  EXPECT_EQ(ids.dtype(), DType::kI64);
  EXPECT_EQ(ids.shape(), (Shape{2, 12}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ids.item({0, i}), x.input_ids_first[i]);
  EXPECT_EQ(ref->tensor("loss").item({0}), static_cast<float>(x.loss));
  EXPECT_EQ(ref->tensor("logits").shape(), (Shape{2, 12, x.vocab}));
}

INSTANTIATE_TEST_SUITE_P(Hf, Fixture, ::testing::ValuesIn(kFixtures), [](const auto& info) {
  std::string s = info.param.name;
  for (char& c : s) c = (c == '-') ? '_' : c;
  return s;
});

// Every folder under tests/fixtures/hf, including ones added later: the checkpoint validates,
// its tensors add up to the index's total_size, and every .safetensors file in it (the
// reference outputs too) opens with a view of every tensor.
TEST(Fixtures, EveryFolderAndFileValidates) {
  size_t folders = 0;
  for (const auto& e : std::filesystem::directory_iterator(testing::fixtures_dir())) {
    if (!e.is_directory()) continue;
    SCOPED_TRACE(e.path().string());
    ++folders;
    ShardedCheckpoint ck = ShardedCheckpoint::open(e.path().string());
    ck.validate();
    const std::string index_path = e.path().string() + "/" + kHfIndexFile;
    if (std::filesystem::exists(index_path)) {
      auto index = nlohmann::json::parse(testing::read_bytes(index_path));
      uint64_t bytes = 0;
      for (const std::string& shard : ck.shards()) {
        auto f = ck.open_shard(shard);  // held: tensors() refers into it
        for (const TensorInfo& t : f->tensors()) bytes += t.end - t.begin;
      }
      EXPECT_EQ(bytes, index["metadata"]["total_size"].get<uint64_t>());
    }
    size_t files = 0;
    for (const auto& f : std::filesystem::directory_iterator(e.path())) {
      if (f.path().extension() != ".safetensors") continue;
      ++files;
      auto st = SafetensorsFile::open(f.path().string());
      for (const TensorInfo& t : st->tensors()) {
        EXPECT_EQ(st->tensor(t.name).shape(), t.shape) << t.name;
      }
    }
    EXPECT_GE(files, 2u);  // weights and reference.safetensors
  }
  EXPECT_GE(folders, 3u);
}

}  // namespace
}  // namespace graft
