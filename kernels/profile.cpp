// Per-family kernel timing (kernels/profile.h).
#include "kernels/profile.h"

#include <cstdlib>
#include <string>

#include "framework/core/device_timer.h"
#include "framework/core/env.h"
#include "framework/core/error.h"
#include "kernels/fp8.h"
#include "kernels/gemm.h"

namespace graft::kernels {
namespace {
thread_local KernelProfile* t_active = nullptr;
}  // namespace

KernelProfile* active_profile() { return t_active; }

namespace {
// GRAFT_PROFILE_SHAPES: unset, "" or "0" = by family, "1" = by shape; anything else an InputError.
bool shapes_from_env() { return env_flag("GRAFT_PROFILE_SHAPES"); }
}  // namespace

KernelProfile::KernelProfile() : previous_(t_active), by_shape_(shapes_from_env()) {
  t_active = this;  // after the check: a profile that threw is never active
}

KernelProfile::~KernelProfile() {
  t_active = previous_;
  for (const Pending& p : pending_) {
    device_timer().destroy(p.start);
    device_timer().destroy(p.end);
  }
}

void KernelProfile::run(const char* name, Device device, const std::function<void()>& fn) {
  if (depth_ > 0 || !device.is_cuda()) {
    fn();
    return;
  }
  DeviceTimer& t = device_timer();
  ++depth_;
  void* a = t.record(device);
  try {
    fn();
  } catch (...) {
    --depth_;
    t.destroy(a);
    throw;
  }
  void* b = t.record(device);
  --depth_;
  pending_.push_back({name, a, b});
}

void KernelProfile::collect() {
  DeviceTimer& t = device_timer();
  for (const Pending& p : pending_) {
    Family& f = totals_[p.name];
    f.ms += t.elapsed_ms(p.start, p.end);
    f.calls += 1;
    t.destroy(p.start);
    t.destroy(p.end);
  }
  pending_.clear();
}

}  // namespace graft::kernels

namespace graft {

std::string gemm_profile_name(const GemmParams& p) {
  std::string s = "gemm " + std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                  std::to_string(p.k) + (p.trans_a ? " T" : " N") + (p.trans_b ? "T " : "N ") +
                  dtype_name(p.dtype) + "->" + dtype_name(p.c_dtype);
  if (p.batch > 1) s += " batch " + std::to_string(p.batch);
  if (p.beta != 0.0f) s += " +=";
  return s;
}

std::string fp8_gemm_profile_name(const Fp8GemmParams& p) {
  std::string s = "fp8_gemm " + std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                  std::to_string(p.k) + " " + dtype_name(p.a_dtype) + " x " +
                  dtype_name(p.b_dtype) + "->" + dtype_name(p.c_dtype);
  if (p.beta != 0.0f) s += " +=";
  return s;
}

}  // namespace graft
