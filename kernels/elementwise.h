// Small element-wise ops, so that layers never touch tensor memory on the host.
//   add:      out = a + b                        (n elements; out may alias a or b)
//   axpy:     y += alpha * x
//   scale:    x *= alpha
//   fill:     x = value
//   cast:     dst = convert(src)                 (f32, bf16, f16; round to nearest even)
//   copy_2d:  dst[r * ld_dst + c] = src[r * ld_src + c]  for r < rows, c < cols (any dtype; used
//             to split and concatenate fused projections and to append to a KV cache)
//   sum_rows: out[c] += sum_r x[r * ld + c]      (column sums into f32, e.g. bias gradients)
// Accumulate rule: as written above (sum_rows and axpy accumulate, the rest write).
// Arithmetic is in f32 (sum_rows in f64 on the CPU); f32, bf16 and f16 storage are accepted.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct AddParams {
  const void* a = nullptr;  // [n]
  const void* b = nullptr;  // [n]
  void* out = nullptr;      // [n]
  int64_t n = 0;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct AxpyParams {
  const void* x = nullptr;  // [n]
  void* y = nullptr;        // [n] (+=)
  float alpha = 1.0f;
  int64_t n = 0;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct ScaleParams {
  void* x = nullptr;  // [n], in place
  float alpha = 1.0f;
  int64_t n = 0;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct FillParams {
  void* x = nullptr;  // [n]
  float value = 0.0f;
  int64_t n = 0;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct CastParams {
  const void* src = nullptr;  // [n]
  void* dst = nullptr;        // [n]
  int64_t n = 0;
  DType src_dtype = DType::kF32;
  DType dst_dtype = DType::kBF16;
  Device device;
  void* stream = nullptr;
};

struct Copy2dParams {
  const void* src = nullptr;  // [rows, cols], row stride ld_src
  void* dst = nullptr;        // [rows, cols], row stride ld_dst
  int64_t rows = 0, cols = 0;
  int64_t ld_src = 0, ld_dst = 0;  // elements; 0 = cols
  DType dtype = DType::kF32;       // any dtype (copied bytewise)
  Device device;
  void* stream = nullptr;
};

struct SumRowsParams {
  const void* x = nullptr;  // [rows, cols], row stride ld
  float* out = nullptr;     // [cols] f32: += (accumulate), or = (its old contents never read)
  int64_t rows = 0, cols = 0;
  int64_t ld = 0;  // 0 = cols
  bool accumulate = true;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void add(const AddParams& p);
void axpy(const AxpyParams& p);
void scale(const ScaleParams& p);
void fill(const FillParams& p);
void cast(const CastParams& p);
void copy_2d(const Copy2dParams& p);
void sum_rows(const SumRowsParams& p);
}  // namespace cpu

inline void add(const AddParams& p) { GRAFT_DISPATCH(add, p); }
inline void axpy(const AxpyParams& p) { GRAFT_DISPATCH(axpy, p); }
inline void scale(const ScaleParams& p) { GRAFT_DISPATCH(scale, p); }
inline void fill(const FillParams& p) { GRAFT_DISPATCH(fill, p); }
inline void cast(const CastParams& p) { GRAFT_DISPATCH(cast, p); }
inline void copy_2d(const Copy2dParams& p) { GRAFT_DISPATCH(copy_2d, p); }
inline void sum_rows(const SumRowsParams& p) { GRAFT_DISPATCH(sum_rows, p); }

}  // namespace graft
