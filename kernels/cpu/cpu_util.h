// Helpers shared by the CPU reference kernels (kernels/cpu/*.cpp only): element load/store for
// the float storage types, and the checks every CPU entry point makes.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace graft::cpu::detail {

// The kernel runs on the CPU: its params must say so.
inline void check_cpu(const Device& d, const char* kernel) {
  GRAFT_CHECK(d.is_cpu(), kernel, ": CPU kernel called with device ", d.str());
}

inline void check_f32(DType t, const char* kernel, const char* what) {
  GRAFT_CHECK(t == DType::kF32, kernel, ": the CPU kernel supports f32 ", what, " only, got ",
              dtype_name(t));
}

inline bool is_half_or_f32(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

inline void check_float(DType t, const char* kernel, const char* what) {
  GRAFT_CHECK(is_half_or_f32(t), kernel, ": ", what, " must be f32, bf16 or f16, got ",
              dtype_name(t));
}

// Element i of a float array of type t (f32, bf16, f16).
inline float load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

inline void store(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
      break;
    default:
      static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
      break;
  }
}

}  // namespace graft::cpu::detail
