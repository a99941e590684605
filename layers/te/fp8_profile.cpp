#include "layers/te/fp8_profile.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "framework/core/device_timer.h"

namespace graft::te {
namespace {
double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Fp8Profile::Fp8Profile(Device device) : device_(device) {
  const char* e = std::getenv("GRAFT_FP8_PROFILE");
  enabled_ = e && std::strcmp(e, "0") != 0 && std::strcmp(e, "") != 0;
}

Fp8Profile::~Fp8Profile() {
  for (const Pending& p : pending_) {
    device_timer().destroy(p.start);
    device_timer().destroy(p.end);
  }
}

Fp8Profile::Scope::Scope(Fp8Profile& p, const char* what) : p_(p), what_(what) {
  if (!p_.enabled_) return;
  if (p_.device_.is_cpu())
    t0_ = now_ms();
  else
    start_ = device_timer().record(p_.device_);
}

Fp8Profile::Scope::~Scope() {
  if (!p_.enabled_) return;
  if (p_.device_.is_cpu())
    p_.total_ms_[what_] += now_ms() - t0_;
  else
    p_.pending_.push_back({what_, start_, device_timer().record(p_.device_)});
}

void Fp8Profile::collect() {
  if (!enabled_) return;
  for (const Pending& p : pending_) {
    total_ms_[p.what] += device_timer().elapsed_ms(p.start, p.end);
    device_timer().destroy(p.start);
    device_timer().destroy(p.end);
  }
  pending_.clear();
  ++steps_;
}

void Fp8Profile::reset() {
  collect();
  total_ms_.clear();
  steps_ = 0;
}

std::map<std::string, double> Fp8Profile::per_step_ms() const {
  std::map<std::string, double> out;
  double sum = 0;
  for (const auto& [k, v] : total_ms_) {
    out[k] = steps_ > 0 ? v / static_cast<double>(steps_) : v;
    sum += out[k];
  }
  out["total"] = sum;
  return out;
}

}  // namespace graft::te
