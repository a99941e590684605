// The train, checkpoint and logging sections of a recipe.
//
//   train:
//     steps: 600               # optimizer updates in the whole run
//     batch_size: 8            # sequences per micro-batch (per data-parallel rank)
//     grad_accum: 1            # micro-batches per update
//     seed: 0                  # weight initialisation
//     stop_after: 0            # end this invocation after this step (0 = run to `steps`);
//                              # not part of the config hash, so a resume may continue
//     max_consecutive_skips: 5 # non-finite steps in a row that end the run
//     sample_tokens: 64        # sample printed at the end (0 = none); stops at EOS
//     sample_prompt: "The "
//     sample_temperature: 0.8  # 0 = greedy; otherwise sampled with the seed train.seed
//     sample_top_p: 0.95       # nucleus mass, in (0, 1]
//     recompute: false         # activation recompute per decoder layer (memory for time)
//   checkpoint:
//     dir: ""                  # "" = no checkpoints
//     every: 0                 # steps between checkpoints (0 = only at the end)
//     keep_last: 3             # complete checkpoints kept
//     resume: auto             # auto (newest complete one in dir, if any) | none | PATH
//   logging:
//     every: 10                # steps between logged lines / metrics records
//     progress: auto           # auto (a live line on a terminal) | line | plain
#pragma once

#include <cstdint>
#include <string>

namespace graft {

class RecipeNode;

struct TrainConfig {
  int64_t steps = 100;
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t seed = 0;
  int64_t stop_after = 0;
  int64_t max_consecutive_skips = 5;
  int64_t sample_tokens = 64;
  std::string sample_prompt = "The ";
  double sample_temperature = 0.8;  // sample_* are not part of the config hash
  double sample_top_p = 0.95;
  bool recompute = false;
};

struct CheckpointConfig {
  std::string dir;
  int64_t every = 0;
  int64_t keep_last = 3;
  std::string resume = "auto";
};

enum class ProgressMode { kAuto, kLine, kPlain };

struct LoggingConfig {
  int64_t every = 10;
  ProgressMode progress = ProgressMode::kAuto;
};

TrainConfig parse_train_config(RecipeNode& n);
// Checks the folder can be created and written (a probe file, removed again).
CheckpointConfig parse_checkpoint_config(RecipeNode& n);
LoggingConfig parse_logging_config(RecipeNode& n);

}  // namespace graft
