#include "framework/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace graft {

double LrSchedule::lr_at(int64_t step) const {
  const int64_t w = config.warmup_steps;
  if (step < w) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(w);
  const double lr_min = config.min_lr_ratio * peak_lr;
  const int64_t span = std::max<int64_t>(1, total_steps - w);
  const double p = std::clamp(static_cast<double>(step - w) / static_cast<double>(span), 0.0, 1.0);
  switch (config.type) {
    case ScheduleType::kConstant:
      return peak_lr;
    case ScheduleType::kCosine:
      return lr_min + (peak_lr - lr_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
    case ScheduleType::kLinear:
      return peak_lr - (peak_lr - lr_min) * p;
    case ScheduleType::kWSD: {
      const int64_t d = std::max<int64_t>(1, config.decay_steps);
      const int64_t start = total_steps - d;
      if (step < start) return peak_lr;
      const double q = std::min(1.0, static_cast<double>(step - start) / static_cast<double>(d));
      return peak_lr - (peak_lr - lr_min) * q;
    }
  }
  return peak_lr;
}

}  // namespace graft
