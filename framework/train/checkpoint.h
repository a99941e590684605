// Native training checkpoints.
//
// CHECKPOINT_DIR/
//   step-00000100/            one complete checkpoint per saved step
//     model.safetensors       the model's parameters (named_parameters names, their dtype)
//     optimizer.safetensors   AdamW state: m.<name>, v.<name> (and master.<name>), f32
//     config.json             the model's HF config (export and generate rebuild from it)
//     recipe.yaml             the resolved recipe that produced it
//     tokenizer.json          a copy of the tokenizer file, when one was used
//     trainer_state.json      step, data position, seeds, schedule, config hash; written LAST
//   latest                    "step-00000100": the newest complete checkpoint
//
// Atomicity: everything is written into .tmp-step-XXXXXXXX-PID/ (each file fsynced), the folder
// is renamed to step-XXXXXXXX and the parent fsynced, then `latest` is replaced atomically. A
// folder without trainer_state.json, or a .tmp-* folder, is incomplete and never resumed from.
// keep_last prunes the oldest complete checkpoints (and stale temp folders) after each save.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"

namespace graft {

class CausalLM;

struct TrainerState {
  int64_t step = 0;             // optimizer updates done (the next update has this index)
  uint64_t data_position = 0;   // global sequences consumed by the sampler
  int64_t optimizer_steps = 0;  // AdamW updates applied (skipped steps excluded)
  int64_t skipped_total = 0;
  int64_t consecutive_skipped = 0;
  int64_t data_seed = 0;  // the sampler's RNG is a pure function of (seed, position)
  int64_t init_seed = 0;
  std::string schedule;  // schedule type
  double lr = 0.0;       // learning rate of the last update
  std::string config_hash;
  std::string tokenizer;  // "byte" or "tokenizer.json" (copied into the checkpoint)

  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& j, const std::string& path);
};

struct CheckpointContents {
  std::vector<std::pair<std::string, Tensor>> model;
  std::vector<std::pair<std::string, Tensor>> optimizer;
  TrainerState state;
  std::string recipe_yaml;
  nlohmann::json hf_config;
  std::string tokenizer_file;  // copied as tokenizer.json when non-empty
};

// Writes CHECKPOINT_DIR/step-XXXXXXXX (replacing one of the same step), points `latest` at it and
// prunes to keep_last. Returns the checkpoint's path.
std::string save_checkpoint(const std::string& dir, const CheckpointContents& c, int64_t keep_last);

bool is_complete_checkpoint(const std::string& path);
// Newest complete checkpoint under dir: the one `latest` names if complete, else the complete
// step-* folder with the highest step; "" when there is none.
std::string find_latest_checkpoint(const std::string& dir);
// Complete checkpoints under dir, oldest first.
std::vector<std::string> list_checkpoints(const std::string& dir);

TrainerState read_trainer_state(const std::string& checkpoint);
// Copies model.safetensors into the model's parameters. Every missing, unexpected or mis-shaped
// tensor is listed in one InputError naming the file.
void load_model_weights(CausalLM& model, const std::string& checkpoint);

}  // namespace graft
