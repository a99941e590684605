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
//     cuda_graph: false        # one GPU: capture the steady-state step in a CUDA graph after
//                              # 2 eager warm-up steps and replay it (cuda_graph_step.h); the
//                              # same losses as the eager step. Ignored with one log line on the
//                              # CPU; refused with one line (eager) with several ranks or FP8
//                              # profiling. Not part of the config hash.
//   checkpoint:
//     dir: ""                  # "" = no checkpoints
//     every: 0                 # steps between checkpoints (0 = only at the end)
//     keep_last: 3             # complete checkpoints kept
//     resume: auto             # auto (newest complete one in dir, if any) | none | PATH
//   logging:
//     every: 10                # steps between logged lines / metrics records
//     progress: auto           # auto (a live line on a terminal) | line | plain
//     tensorboard: ""          # a folder for TensorBoard event files ("" = none; rank 0 writes)
//     peak_tflops: 0           # per-device peak for the metrics' mfu; 0 = measured on CUDA (a
//                              # bf16 8192³ GEMM at start, as graft bench), no mfu on the CPU
//   eval:                      # needs data.validation (framework/data/validation.h)
//     every: 0                 # steps between evaluations (0 = only at the end of the run)
//     batches: 8               # fixed validation batches of train.batch_size sequences per rank
// `eval` is not part of the config hash: it does not change training.
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
  bool cuda_graph = false;
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
  std::string tensorboard;
  double peak_tflops = 0;
};

struct EvalConfig {
  int64_t every = 0;
  int64_t batches = 8;
  bool enabled = false;  // data.validation is set
};

TrainConfig parse_train_config(RecipeNode& n);
// Checks the folder can be created and written (a probe file, removed again).
CheckpointConfig parse_checkpoint_config(RecipeNode& n);
LoggingConfig parse_logging_config(RecipeNode& n);
// has_validation: data.validation is set (eval.every > 0 without it is an error).
EvalConfig parse_eval_config(RecipeNode& n, bool has_validation);

}  // namespace graft
