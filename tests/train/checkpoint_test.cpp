// Native checkpoints: atomic layout, `latest`, keep-last-k, incomplete folders ignored, shape
// mismatches reported.
#include "framework/train/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "framework/model/causal_lm.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

CheckpointContents contents(int64_t step) {
  CheckpointContents c;
  c.model = {{"w", Tensor::full({2, 2}, static_cast<float>(step))}};
  c.optimizer = {{"m.w", Tensor::zeros({2, 2}, DType::kF32)}};
  c.state.step = step;
  c.state.data_position = static_cast<uint64_t>(step * 4);
  c.state.config_hash = "abc";
  c.state.tokenizer = "byte";
  c.recipe_yaml = "train: {steps: 10}\n";
  c.hf_config = {{"model_type", "llama"}};
  return c;
}

TEST(Checkpoint, WritesCompleteFolderAndLatest) {
  TempDir d;
  const std::string p = save_checkpoint(d / "ck", contents(5), 3);
  EXPECT_EQ(p, d / "ck/step-00000005");
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "config.json", "recipe.yaml",
                        "trainer_state.json"})
    EXPECT_TRUE(fs::is_regular_file(p + "/" + f)) << f;
  EXPECT_TRUE(is_complete_checkpoint(p));
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), p);
  TrainerState s = read_trainer_state(p);
  EXPECT_EQ(s.step, 5);
  EXPECT_EQ(s.data_position, 20u);
  EXPECT_EQ(s.config_hash, "abc");
  // Nothing temporary is left behind.
  for (const auto& e : fs::directory_iterator(d / "ck"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Checkpoint, KeepsTheLastK) {
  TempDir d;
  for (int64_t s : {1, 2, 3, 4}) save_checkpoint(d / "ck", contents(s), 2);
  auto all = list_checkpoints(d / "ck");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], d / "ck/step-00000003");
  EXPECT_EQ(all[1], d / "ck/step-00000004");
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000004");
}

TEST(Checkpoint, IncompleteCheckpointsAreIgnored) {
  TempDir d;
  save_checkpoint(d / "ck", contents(3), 5);
  // A crash mid-write leaves a temp folder, or a step folder without trainer_state.json.
  fs::create_directories(d / "ck/.tmp-step-00000009-123");
  fs::create_directories(d / "ck/step-00000007");
  fs::copy_file(d / "ck/step-00000003/model.safetensors", d / "ck/step-00000007/model.safetensors");
  EXPECT_FALSE(is_complete_checkpoint(d / "ck/step-00000007"));
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003");
  // A `latest` naming the incomplete one falls back to the newest complete folder.
  test::write_text(d / "ck/latest", "step-00000007\n");
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003");
  // A corrupt trainer_state.json makes a folder incomplete too.
  save_checkpoint(d / "ck", contents(8), 5);
  test::write_text(d / "ck/step-00000008/trainer_state.json", "{\"step\": ");
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003");
  EXPECT_EQ(find_latest_checkpoint(d / "nothing-here"), "");
}

TEST(Checkpoint, ResavingAStepReplacesIt) {
  TempDir d;
  save_checkpoint(d / "ck", contents(2), 3);
  CheckpointContents c = contents(2);
  c.state.data_position = 99;
  save_checkpoint(d / "ck", c, 3);
  EXPECT_EQ(read_trainer_state(d / "ck/step-00000002").data_position, 99u);
  EXPECT_EQ(list_checkpoints(d / "ck").size(), 1u);
}

ModelConfig micro_config(int64_t hidden) {
  nlohmann::json j = {
      {"model_type", "llama"},    {"vocab_size", 50},       {"hidden_size", hidden},
      {"intermediate_size", 48},  {"num_hidden_layers", 1}, {"num_attention_heads", 2},
      {"num_key_value_heads", 1}, {"hidden_act", "silu"},   {"max_position_embeddings", 32}};
  return parse_hf_config(j, "micro.json");
}

TEST(Checkpoint, LoadingIntoAnotherShapeListsEveryMismatch) {
  TempDir d;
  auto a = build_model(micro_config(16));
  a->init_weights(1);
  CheckpointContents c = contents(1);
  c.model.clear();
  for (auto& [name, p] : a->named_parameters()) c.model.emplace_back(name, p->value);
  c.model.emplace_back("extra.weight", Tensor::zeros({1}, DType::kF32));
  const std::string path = save_checkpoint(d / "ck", c, 1);
  auto b = build_model(micro_config(24));
  std::string msg;
  try {
    load_model_weights(*b, path);
  } catch (const InputError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find(path + "/model.safetensors: checkpoint does not match the model"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("embed_tokens.weight has shape [50, 16], the model expects [50, 24]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unexpected extra.weight"), std::string::npos) << msg;
  // The same shape loads bit-exactly.
  auto e = build_model(micro_config(16));
  c.model.pop_back();
  save_checkpoint(d / "ck", c, 1);
  load_model_weights(*e, find_latest_checkpoint(d / "ck"));
  auto pa = a->named_parameters(), pe = e->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_f32_vector(), pe[i].second->value.to_f32_vector());
}

}  // namespace
}  // namespace graft
