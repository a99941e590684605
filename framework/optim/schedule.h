// Learning-rate schedules. `step` is the 0-based index of the optimizer update being taken.
//
//   warmup (step < W):       lr · (step + 1) / W
//   then, with p = (step - W) / (T - W) in [0, 1] and lr_min = min_lr_ratio · lr:
//   constant:                lr
//   cosine:                  lr_min + (lr - lr_min) · ½ (1 + cos(π p))
//   linear:                  lr - (lr - lr_min) · p
//   wsd (D = decay_steps):   lr until step T - D, then linear from lr to lr_min over the last D
//                            steps: lr - (lr - lr_min) · (step - (T - D)) / D
// Steps at or past T return the final value (lr_min, or lr for constant).
#pragma once

#include <cstdint>

#include "framework/optim/optim_config.h"

namespace graft {

struct LrSchedule {
  ScheduleConfig config;
  double peak_lr = 0.0;
  int64_t total_steps = 0;

  double lr_at(int64_t step) const;
};

}  // namespace graft
