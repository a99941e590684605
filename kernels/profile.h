// Per-family timing of the CUDA kernel calls made through GRAFT_DISPATCH (`graft bench
// --profile`), without nsys: while a KernelProfile is active on the calling thread, every
// dispatched CUDA call of a family (rmsnorm_fwd, gemm, attn_bwd, ...) is bracketed by two device
// timestamps (DeviceTimer: CUDA events on the current stream). A call made inside another
// dispatched call (the GEMMs of the unfused attention) is counted in the outer one only, so the
// families' times add up to at most the step time; work that is not a dispatched kernel (memsets,
// copies, collectives) is what remains. Events add a few microseconds per call, so a profiled
// step is a little slower than an unprofiled one: compare families with each other and with
// their floors, and take the step time from an unprofiled run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "framework/core/device.h"

namespace graft::kernels {

class KernelProfile {
 public:
  struct Family {
    double ms = 0;
    int64_t calls = 0;
  };
  KernelProfile();   // becomes the calling thread's active profile (nesting: the innermost)
  ~KernelProfile();  // restores the previous one; pending events are discarded
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;

  // Runs fn, timing it under `name` unless another timed call is already running.
  void run(const char* name, Device device, const std::function<void()>& fn);
  // Waits for the recorded events and adds their times into the per-family totals.
  void collect();
  // Totals since construction or reset (collect() first).
  const std::map<std::string, Family>& families() const { return totals_; }
  void reset() { totals_.clear(); }
  // GRAFT_PROFILE_SHAPES=1 (0 or unset: off; any other value is an InputError from the
  // constructor): the GEMM families are split by shape and layout ("gemm 8192x2048x2048
  // NT bf16->bf16"), so each GEMM's in-step time can be set against its time alone.
  bool by_shape() const { return by_shape_; }

 private:
  struct Pending {
    std::string name;
    void *start, *end;
  };
  KernelProfile* previous_;
  int depth_ = 0;
  bool by_shape_ = false;
  std::vector<Pending> pending_;
  std::map<std::string, Family> totals_;
};

// The calling thread's active profile, or null (the common case: no timing at all).
KernelProfile* active_profile();

}  // namespace graft::kernels
