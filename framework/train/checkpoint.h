// Native training checkpoints: layout-independent, written by every rank.
//
// CHECKPOINT_DIR/
//   step-00000100/            one complete checkpoint per saved step
//     rank-RRRRR.safetensors  rank R's pieces of the logical tensors (see tensor_pieces.h):
//                               model/<param>         the parameters, in their working dtype
//                               optim/m/<param>       AdamW first moment, f32
//                               optim/v/<param>       AdamW second moment, f32
//                               optim/master/<param>  f32 master weights (when kept apart)
//                               fp8/<slot>.amax_history, fp8/<slot>.scale  FP8 delayed
//                                 scaling state (rank 0; docs/fp8.md)
//     rank-RRRRR.json         rank R's piece list (name, global shape, box offset and shape,
//                             flat range)
//     manifest.json           every piece of every logical tensor with its global shape and
//                             dtype, checked for exact coverage; the world size and layout are
//                             recorded for information, loading never depends on them
//     config.json             the model's HF config (export and generate rebuild from it)
//     recipe.yaml             the resolved recipe that produced it
//     tokenizer.json          a copy of the tokenizer file, when one was used
//     trainer_state.json      step, data-sampler position, RNG seeds, schedule, config hash
//     COMMIT                  the commit marker, written LAST
//   latest                    "step-00000100": the newest committed checkpoint
//
// Saving is collective over the world group: rank 0 makes .tmp-step-XXXXXXXX/ (removing a stale
// one); every rank writes and fsyncs its pieces there; once all have, rank 0 writes the manifest
// and the small files, then COMMIT, fsyncs the folder, renames it to step-XXXXXXXX (an existing
// folder of that step is swapped out atomically), fsyncs the parent, replaces `latest` and
// prunes to keep_last. Each phase ends with a collective that also carries failures, so a rank
// that fails makes every rank throw instead of waiting. A folder without COMMIT (or whose
// manifest.json or trainer_state.json is missing or unparseable), or a .tmp-* folder, is
// incomplete: never listed, never pointed to by `latest`, never resumed from.
//
// Loading reads each rank's own box (its parameters' ShardSpecs) from whatever pieces were
// written, so a checkpoint saved in one layout resumes in any other.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/train/tensor_pieces.h"

namespace graft {

class CausalLM;
class ProcessGroup;

// Logical-name prefixes of the tensors in a native checkpoint.
inline constexpr const char* kModelPrefix = "model/";
inline constexpr const char* kOptimPrefix = "optim/";
inline constexpr const char* kMasterPrefix = "optim/master/";
// FP8 delayed-scaling state (precision.fp8): fp8/<slot>.amax_history [len], fp8/<slot>.scale [1].
inline constexpr const char* kFp8Prefix = "fp8/";

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

// What one rank contributes to a checkpoint. Only rank 0's state, recipe, config and tokenizer
// are written (every rank holds the same ones).
struct CheckpointContents {
  std::vector<TensorPiece> pieces;  // this rank's pieces (model/..., optim/...)
  TrainerState state;
  std::string recipe_yaml;
  nlohmann::json hf_config;
  std::string tokenizer_file;  // copied as tokenizer.json when non-empty
  nlohmann::json layout;       // informational (world, tp, cp, dp, zero): stored in the manifest
};

// Collective over `world`: writes CHECKPOINT_DIR/step-XXXXXXXX (replacing one of the same
// step), points `latest` at it and prunes to keep_last. Every rank returns the checkpoint's
// path, or throws (every rank) when any rank failed.
std::string save_checkpoint(const std::string& dir, const CheckpointContents& c, int64_t keep_last,
                            ProcessGroup& world);

// COMMIT, manifest.json and trainer_state.json present and parseable.
bool is_complete_checkpoint(const std::string& path);
// Newest complete checkpoint under dir: the one `latest` names if complete, else the complete
// step-* folder with the highest step; "" when there is none.
std::string find_latest_checkpoint(const std::string& dir);
// Complete checkpoints under dir, oldest first.
std::vector<std::string> list_checkpoints(const std::string& dir);

TrainerState read_trainer_state(const std::string& checkpoint);
// Reads model/<name> into each parameter: the box its ShardSpec says this rank holds, converted
// to the parameter's dtype. With prefer_master, optim/master/<name> (the f32 master weights)
// is read instead where the checkpoint has it (export writes from the masters). Every missing,
// unexpected or mis-shaped (global shape) tensor is listed in one InputError naming the
// manifest.
void load_model_weights(CausalLM& model, const std::string& checkpoint, bool prefer_master = false);

}  // namespace graft
