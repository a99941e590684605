// HF checkpoint folders: sharded export and re-import, index validation, byte sizes.
#include "framework/io/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/io/io_test_util.h"

namespace graft {
namespace {

using testing::BadCheckpoint;
using testing::TempDir;

std::vector<std::pair<std::string, Tensor>> five_tensors() {
  std::vector<std::pair<std::string, Tensor>> t;
  // 100 floats = 400 bytes each; values identify the tensor.
  for (int i = 0; i < 5; ++i) {
    t.emplace_back("layer." + std::to_string(i) + ".w", Tensor::full({10, 10}, float(i + 1)));
  }
  return t;
}

TEST(HfCheckpoint, WritesShardsAndIndexAndReadsThemBack) {
  TempDir dir;
  // 1000-byte shards: [w0 w1] (800), [w2 w3], [w4]; the order given is kept.
  write_hf_shards(dir.path(), five_tensors(), 1000);
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path());
  ASSERT_EQ(ck.shards(), (std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                   "model-00002-of-00003.safetensors",
                                                   "model-00003-of-00003.safetensors"}));
  EXPECT_EQ(ck.weight_map().at("layer.0.w"), "model-00001-of-00003.safetensors");
  EXPECT_EQ(ck.weight_map().at("layer.3.w"), "model-00002-of-00003.safetensors");
  EXPECT_EQ(ck.weight_map().at("layer.4.w"), "model-00003-of-00003.safetensors");
  EXPECT_EQ(ck.shard_tensors("model-00002-of-00003.safetensors"),
            (std::vector<std::string>{"layer.2.w", "layer.3.w"}));
  ck.validate();
  auto shard = ck.open_shard("model-00002-of-00003.safetensors");
  EXPECT_EQ(shard->tensor("layer.3.w").item({9, 9}), 4.0);
  EXPECT_EQ(shard->metadata().at("format"), "pt");  // what transformers' loader expects

  auto index = nlohmann::json::parse(testing::read_bytes(dir.file(kHfIndexFile)));
  EXPECT_EQ(index["metadata"]["total_size"], 2000);
  EXPECT_EQ(index["weight_map"].size(), 5u);
  EXPECT_FALSE(std::filesystem::exists(dir.file(kHfSingleFile)));
}

TEST(HfCheckpoint, SingleFileWhenOneShardSufficesAndStaleFilesRemoved) {
  TempDir dir;
  write_hf_shards(dir.path(), five_tensors(), 1000);  // 3 shards + index
  write_hf_shards(dir.path(), five_tensors(), parse_byte_size("5GB", "max_shard_size"));
  EXPECT_TRUE(std::filesystem::exists(dir.file(kHfSingleFile)));
  EXPECT_FALSE(std::filesystem::exists(dir.file(kHfIndexFile)));
  EXPECT_FALSE(std::filesystem::exists(dir.file("model-00001-of-00003.safetensors")));
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path());
  EXPECT_EQ(ck.shards(), (std::vector<std::string>{kHfSingleFile}));
  EXPECT_EQ(ck.weight_map().size(), 5u);
  ck.validate();
  EXPECT_EQ(ck.open_shard(kHfSingleFile)->tensor("layer.1.w").item({0, 0}), 2.0);
}

TEST(HfCheckpoint, TensorLargerThanShardLimitGetsItsOwnShard) {
  TempDir dir;
  write_hf_shards(dir.path(), five_tensors(), 300);  // every 400-byte tensor alone
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path());
  EXPECT_EQ(ck.shards().size(), 5u);
  EXPECT_EQ(ck.weight_map().at("layer.4.w"), "model-00005-of-00005.safetensors");
}

TEST(HfCheckpoint, OpenRejectsWhatIsNotAFolder) {
  TempDir dir;
  EXPECT_THROW(ShardedCheckpoint::open(dir.file("nope")), InputError);
  testing::write_bytes(dir.file("f"), "x");
  EXPECT_THROW(ShardedCheckpoint::open(dir.file("f")), InputError);
  write_hf_shards(dir.path(), five_tensors(), 1000);
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path());
  EXPECT_THROW(ck.open_shard("model.safetensors"), InputError);  // not a shard of this index
}

class BadCheckpointFolder : public ::testing::TestWithParam<BadCheckpoint> {};

TEST_P(BadCheckpointFolder, IsRejectedNamingFileAndRule) {
  const BadCheckpoint& bad = GetParam();
  TempDir dir;
  bad.make(dir.path());
  std::string msg;
  try {
    ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path());
    EXPECT_FALSE(bad.caught_by_open) << "open() accepted " << bad.label;
    ck.validate();
    FAIL() << "validate() accepted " << bad.label;
  } catch (const InputError& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg.rfind(dir.path() + "/", 0) == 0 || msg.rfind(dir.path() + ":", 0) == 0, true)
      << msg;
  EXPECT_NE(msg.find(bad.expect), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Rules, BadCheckpointFolder,
                         ::testing::ValuesIn(testing::bad_checkpoints()),
                         [](const auto& info) { return info.param.label; });

TEST(ParseByteSize, UnitsDecimalAndBinary) {
  EXPECT_EQ(parse_byte_size("1000", "s"), 1000u);
  EXPECT_EQ(parse_byte_size("40KB", "s"), 40'000u);
  EXPECT_EQ(parse_byte_size("5GB", "s"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("2MiB", "s"), 2u << 20);
  EXPECT_EQ(parse_byte_size("1kib", "s"), 1024u);
  EXPECT_EQ(parse_byte_size("3T", "s"), 3'000'000'000'000u);
  for (const char* bad :
       {"", "abc", "5XB", "0", "-5", "1.5GB", "5iB", "GB", "99999999999999999999", "20000000TiB"}) {
    try {
      parse_byte_size(bad, "convert.max_shard_size");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("convert.max_shard_size"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace graft
