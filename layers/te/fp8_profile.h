// Opt-in timing of the FP8 work of a step (GRAFT_FP8_PROFILE=1), for the per-kernel breakdown of
// docs/performance.md when no GPU profiler is at hand: the casts (by tensor kind, the transposed
// copies included: they are written by the same kernels), the fused activation cast, the FP8 GEMMs
// (fprop, dgrad, wgrad), and the per-step amax all-reduce and scale update. On a GPU each region
// is bracketed by two events on the current stream (the work is not serialised; the events are
// read once per step, in Fp8State::end_step); on the CPU by the wall clock. Off, it costs one
// branch per region.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "framework/core/device.h"

namespace graft::te {

class Fp8Profile {
 public:
  explicit Fp8Profile(Device device);
  ~Fp8Profile();
  Fp8Profile(const Fp8Profile&) = delete;
  Fp8Profile& operator=(const Fp8Profile&) = delete;
  bool enabled() const { return enabled_; }

  class Scope {
   public:
    Scope(Fp8Profile& p, const char* what);
    ~Scope();

   private:
    Fp8Profile& p_;
    const char* what_;
    void* start_ = nullptr;
    double t0_ = 0;
  };

  // Reads the pending events (waits for them) into the totals; counts one more step.
  void collect();
  void reset();  // drops the totals (after warm-up steps)
  // Milliseconds per step of each region and their sum: {"cast_input": 1.2, ..., "total": 9.8}.
  std::map<std::string, double> per_step_ms() const;

 private:
  struct Pending {
    const char* what;
    void* start;
    void* end;
  };
  Device device_;
  bool enabled_ = false;
  std::vector<Pending> pending_;
  std::map<std::string, double> total_ms_;
  int64_t steps_ = 0;
};

}  // namespace graft::te
