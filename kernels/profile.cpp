// Per-family kernel timing (kernels/profile.h).
#include "kernels/profile.h"

#include "framework/core/device_timer.h"

namespace graft::kernels {
namespace {
thread_local KernelProfile* t_active = nullptr;
}  // namespace

KernelProfile* active_profile() { return t_active; }

KernelProfile::KernelProfile() : previous_(t_active) { t_active = this; }

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
