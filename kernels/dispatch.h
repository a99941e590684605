// Backend dispatch for kernel families.
//
// Each family header (kernels/<family>.h) declares its parameter structs, the CPU reference in
// namespace graft::cpu, and a dispatching entry point:
//
//   namespace cpu { void rmsnorm_fwd(const NormFwdParams& p); }
//   inline void rmsnorm_fwd(const NormFwdParams& p) { GRAFT_DISPATCH(rmsnorm_fwd, p); }
//
// CUDA implementations live in kernels/cuda/<family>.cu and register themselves by name:
//
//   GRAFT_REGISTER_CUDA_KERNEL(rmsnorm_fwd, NormFwdParams, launch_rmsnorm_fwd);
//
// so the CPU-only build needs no CUDA symbols, and a family without a CUDA implementation fails
// loudly at the call ("no CUDA implementation of rmsnorm_fwd") instead of silently running on the
// CPU. Every params struct has `Device device` and `void* stream` members. While a
// KernelProfile (kernels/profile.h) is active on the thread, each CUDA call is timed per family.
#pragma once

#include <string>

#include "framework/core/device.h"
#include "kernels/profile.h"

namespace graft::kernels {

using ErasedKernel = void (*)(const void* params);

void register_cuda_kernel(const std::string& name, ErasedKernel fn);
// Throws InputError when no CUDA implementation of `name` is registered.
ErasedKernel cuda_kernel(const std::string& name);
bool has_cuda_kernel(const std::string& name);

template <class P, void (*Fn)(const P&)>
void erase_kernel(const void* p) {
  Fn(*static_cast<const P*>(p));
}

}  // namespace graft::kernels

#define GRAFT_DISPATCH(name, p)                                                                    \
  do {                                                                                             \
    if ((p).device.is_cuda()) {                                                                    \
      static const ::graft::kernels::ErasedKernel graft_k_ = ::graft::kernels::cuda_kernel(#name); \
      if (auto* graft_prof_ = ::graft::kernels::active_profile())                                  \
        graft_prof_->run(#name, (p).device, [&] { graft_k_(&(p)); });                              \
      else                                                                                         \
        graft_k_(&(p));                                                                            \
    } else {                                                                                       \
      ::graft::cpu::name(p);                                                                       \
    }                                                                                              \
  } while (0)

// GRAFT_DISPATCH with a finer profile name: while the active profile splits by shape
// (KernelProfile::by_shape(), GRAFT_PROFILE_SHAPES=1), the call is timed under `detail` (a
// std::string expression, evaluated only then) instead of the family's name.
#define GRAFT_DISPATCH_DETAIL(name, p, detail)                                                     \
  do {                                                                                             \
    if ((p).device.is_cuda()) {                                                                    \
      static const ::graft::kernels::ErasedKernel graft_k_ = ::graft::kernels::cuda_kernel(#name); \
      if (auto* graft_prof_ = ::graft::kernels::active_profile()) {                                \
        const std::string graft_n_ = graft_prof_->by_shape() ? std::string(detail) : #name;        \
        graft_prof_->run(graft_n_.c_str(), (p).device, [&] { graft_k_(&(p)); });                   \
      } else {                                                                                     \
        graft_k_(&(p));                                                                            \
      }                                                                                            \
    } else {                                                                                       \
      ::graft::cpu::name(p);                                                                       \
    }                                                                                              \
  } while (0)

#define GRAFT_REGISTER_CUDA_KERNEL(name, Params, fn)                                            \
  static const bool graft_cuda_reg_##name = [] {                                                \
    ::graft::kernels::register_cuda_kernel(#name, &::graft::kernels::erase_kernel<Params, fn>); \
    return true;                                                                                \
  }()
