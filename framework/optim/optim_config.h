// The optim and schedule sections of a recipe.
//
//   optim:
//     lr: 3.0e-4            # peak learning rate
//     betas: [0.9, 0.95]
//     eps: 1.0e-8
//     weight_decay: 0.1     # decoupled (AdamW)
//     no_decay: [norm, bias, embedding]   # parameter kinds excluded from weight decay
//     grad_clip: 1.0        # clip by global L2 norm; 0 = off
//   schedule:
//     type: cosine          # constant | cosine | linear | wsd (warmup-stable-decay)
//     warmup_steps: 100     # linear warmup from lr/warmup to lr
//     min_lr_ratio: 0.1     # floor of the decay, as a fraction of lr
//     decay_steps: 0        # wsd: length of the final linear decay (0 = 20% of the steps)
#pragma once

#include <cstdint>
#include <string>

namespace graft {

class RecipeNode;

struct OptimConfig {
  double lr = 3e-4;
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_norms = false, decay_biases = false, decay_embeddings = false;
  double grad_clip = 1.0;
};

enum class ScheduleType { kConstant, kCosine, kLinear, kWSD };

struct ScheduleConfig {
  ScheduleType type = ScheduleType::kCosine;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  int64_t decay_steps = 0;
};

OptimConfig parse_optim_config(RecipeNode& n);
// total_steps validates warmup/decay lengths against the run.
ScheduleConfig parse_schedule_config(RecipeNode& n, int64_t total_steps);
const char* schedule_name(ScheduleType t);

}  // namespace graft
