// FP8 with per-tensor scaling, as TransformerEngine casts and multiplies.
//
// Quantise (forward and backward cast):
//   q[i]  = fp8(x[i] * scale)         round to nearest even, saturating to the format's largest
//                                     finite value (E4M3 448, E5M2 57344; inf saturates too,
//                                     NaN stays NaN)
//   qt    = q transposed              optional: the [cols, rows] copy dgrad/wgrad GEMMs need
//   amax  = max(amax, max_i |x[i]|)   optional, accumulated (max) so several casts of one tensor
//                                     and the delayed-scaling history can share it; NaN wins
//   scale_inv = 1 / scale             optional, for the GEMM that reads q
// Dequantise: y[i] = float(q[i]) * scale_inv (tests and the CPU emulation).
// Amax alone: amax = max(amax, max |x|) (current scaling takes it just before the cast).
//
// Quantise with the bias gradient (the grad-output cast of a linear with a bias, TE's
// fp8_cast_transpose_bgrad): fp8_quantize of x, and for each segment s of `dbias`
//   s.out[j] = (s.accumulate ? s.out[j] : 0) + sum_r x[r, s.offset + j]      j < s.size
// the column sums of the high-precision x (never the quantised values), rounded once to f32 and
// then added (s.out's old contents are never read when !accumulate: a stale lazy gradient). The
// segments are the bias parameters of a linear's blocks (te parameters_split), disjoint column
// ranges inside [0, cols). The CPU reference sums in f64 (as sum_rows does, so it equals
// layers::bias_grad bit for bit); the CUDA kernel sums the 64 rows of each cast tile in f32 in
// a fixed order and the tiles' partials in f64, so it differs from the reference by the f32
// rounding of those tile sums only (and is deterministic).
//
// FP8 GEMM, the TN form cuBLASLt supports on Hopper, row-major:
//   C[m, n] = alpha * (A[m, k] * a_scale_inv) (B[n, k] * b_scale_inv)^T + beta * C (+ bias)
// with an optional bias [n] (bf16 or f32) added to every row in f32 before C is rounded: on CUDA
// cuBLASLt's CUBLASLT_EPILOGUE_BIAS (the forward GEMM of a linear with a bias, as TE runs it), or,
// where cuBLASLt has no such algorithm for the types (logged once), a separate add after the GEMM.
// A and B are fp8 (E4M3, or one of them E5M2: gradients), C is bf16 or f32, accumulation f32.
// fast_accum selects Hopper's faster FP8 accumulation (TE uses it for the forward GEMM and the
// split, more precise accumulation for dgrad/wgrad). Any m, n, k: the CUDA launcher pads to
// multiples of 16 internally (zero rows/columns), never falls back to another precision.
// The CPU reference dequantises both operands and runs the f32 GEMM: the FP8 inputs are exact,
// so a CUDA result differs from it only by accumulation order.
// Scales, scale_inv and amax are single f32 values in device memory (host memory on the CPU).
//
// Activation fused with the cast (LayerNormMLP's fc1 -> fc2, delayed scaling: the scale is known
// before the activation runs): a = act(h) as kernels/activation.h defines it (gated: h = gate |
// up, [rows, 2 cols]), then quantised like fp8_quantize (q, qt, amax of a, scale_inv), without
// writing a in high precision. a is evaluated in f32 and cast from f32 (the unfused GPU path rounds
// it to the activations' dtype first). The CPU reference is activation_fwd (f32) + fp8_quantize.
//
// Activation backward fused with the cast (LayerNormMLP's fc1 grad-output cast under delayed
// scaling): dh = the activation's backward as kernels/activation.h defines it (da the gradient of
// a = act(h); gated: dh = [dgate | dup], [rows, 2 cols]), then quantised like fp8_quantize (q
// [rows, hcols], qt [hcols, rows], amax of dh, scale_inv; hcols = 2 cols gated, else cols),
// without writing dh in high precision. dh is evaluated in f32 and cast from f32 (the unfused GPU
// path rounds it to the gradients' dtype first). The CPU reference is activation_bwd (f32) +
// fp8_quantize.
//
// Scale update for n tensors at once (TE's delayed_scaling.cu kernel_bulk and current scaling's
// compute_scale_from_amax), one column i per tensor:
//   delayed: history [len, n] holds in row 0 the amax this step's casts recorded (the staging
//            slot) and in rows 1..len-1 the window of earlier steps. last = history[0][i]:
//            if last != 0 the column rolls: new[j] = old[j+1] (j = 0..len-2), new[len-1] = last,
//            then new[0] = 0 (old[1], the oldest, drops out); amax = max over old[0..len-1]
//            (kMax) or last (most_recent); if last == 0 (the tensor was not cast) nothing rolls
//            and amax = 0.
//   current: history is amax [1, n] (len 1), read and reset to 0 (ready for the next amax).
//   scale[i] = scaled_max[i] / amax when amax is finite and > 0 (scaled_max = fp8_max /
//   2^margin); otherwise the old scale (delayed) or 1 (current); an infinite quotient (a tiny
//   amax) becomes FLT_MAX.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/activation.h"
#include "kernels/dispatch.h"

namespace graft {

struct Fp8QuantizeParams {
  const void* x = nullptr;  // [rows, cols] in x_dtype (f32, bf16, f16)
  DType x_dtype = DType::kF32;
  void* q = nullptr;   // [rows, cols] fp8, optional
  void* qt = nullptr;  // [cols, rows] fp8, optional
  DType fp8 = DType::kF8E4M3;
  int64_t rows = 0, cols = 0;
  const float* scale = nullptr;  // [1]
  float* amax = nullptr;         // [1] optional, accumulated with max
  float* scale_inv = nullptr;    // [1] optional, written
  Device device;
  void* stream = nullptr;
};

// One bias gradient written by fp8_quantize_dbias: out [size] f32 receives the column sums of
// x[:, offset, offset + size).
struct Fp8DbiasSegment {
  float* out = nullptr;  // [size] f32: += (accumulate) or = (its old contents never read)
  int64_t offset = 0, size = 0;
  bool accumulate = false;
};

struct Fp8QuantizeDbiasParams : Fp8QuantizeParams {
  std::vector<Fp8DbiasSegment> dbias;  // disjoint column ranges of x
};

struct Fp8DequantizeParams {
  const void* q = nullptr;  // [n] fp8
  DType fp8 = DType::kF8E4M3;
  const float* scale_inv = nullptr;  // [1]
  void* y = nullptr;                 // [n] in y_dtype (f32, bf16, f16), written
  DType y_dtype = DType::kF32;
  int64_t n = 0;
  Device device;
  void* stream = nullptr;
};

struct AmaxParams {
  const void* x = nullptr;  // [n] f32, bf16 or f16
  DType dtype = DType::kF32;
  int64_t n = 0;
  float* amax = nullptr;  // [1] accumulated with max
  Device device;
  void* stream = nullptr;
};

struct Fp8GemmParams {
  const void* a = nullptr;  // [m, k] fp8 row-major
  const void* b = nullptr;  // [n, k] fp8 row-major
  void* c = nullptr;        // [m, n] row-major
  DType a_dtype = DType::kF8E4M3, b_dtype = DType::kF8E4M3;
  DType c_dtype = DType::kBF16;  // bf16 or f32
  int64_t m = 0, n = 0, k = 0;
  const float* a_scale_inv = nullptr;  // [1]
  const float* b_scale_inv = nullptr;  // [1]
  float alpha = 1.0f, beta = 0.0f;
  bool fast_accum = true;
  const void* bias = nullptr;       // optional [n], added to every row of C (the epilogue)
  DType bias_dtype = DType::kBF16;  // bf16 or f32 (the CPU: f32 or c_dtype)
  Device device;
  void* stream = nullptr;
};

struct Fp8ActQuantizeParams {
  const void* h = nullptr;  // [rows, cols] or, gated, [rows, 2 cols] in h_dtype (f32 on the CPU)
  DType h_dtype = DType::kF32;
  Activation act = Activation::kSwiglu;
  void* q = nullptr;   // [rows, cols] fp8, optional
  void* qt = nullptr;  // [cols, rows] fp8, optional
  DType fp8 = DType::kF8E4M3;
  int64_t rows = 0, cols = 0;
  const float* scale = nullptr;  // [1]
  float* amax = nullptr;         // [1] optional, accumulated with max
  float* scale_inv = nullptr;    // [1] optional, written
  Device device;
  void* stream = nullptr;
};

struct Fp8ActBwdQuantizeParams {
  const void* da = nullptr;  // [rows, cols] in dtype (f32 on the CPU): the gradient of act(h)
  const void* h = nullptr;   // [rows, cols] or, gated, [rows, 2 cols] in dtype: act's input
  DType dtype = DType::kF32;
  Activation act = Activation::kSwiglu;
  void* q = nullptr;   // [rows, hcols] fp8, optional
  void* qt = nullptr;  // [hcols, rows] fp8, optional
  DType fp8 = DType::kF8E5M2;
  int64_t rows = 0, cols = 0;    // cols: of da (hcols = 2 cols when gated)
  const float* scale = nullptr;  // [1]
  float* amax = nullptr;         // [1] optional, accumulated with max
  float* scale_inv = nullptr;    // [1] optional, written
  Device device;
  void* stream = nullptr;
};

// The cast that finishes a fused kernel's unfused fallback (act + cast, norm + cast): the FP8
// outputs, scale, amax, device and stream of `p` (any params with those fields), reading x.
template <class P>
Fp8QuantizeParams quantize_params_of(const P& p, const void* x, DType x_dtype) {
  Fp8QuantizeParams q;
  q.x = x;
  q.x_dtype = x_dtype;
  q.q = p.q;
  q.qt = p.qt;
  q.fp8 = p.fp8;
  q.rows = p.rows;
  q.cols = p.cols;
  q.scale = p.scale;
  q.amax = p.amax;
  q.scale_inv = p.scale_inv;
  q.device = p.device;
  q.stream = p.stream;
  return q;
}

struct Fp8ScaleUpdateParams {
  float* history = nullptr;           // [len, n]: delayed (rolled in place) / [1, n]: current
  float* scale = nullptr;             // [n], updated
  const float* scaled_max = nullptr;  // [n]: fp8_max / 2^margin of each tensor's format
  int64_t n = 0, len = 1;
  bool current = false;      // current scaling: no roll, amax = history[0][i], fallback scale 1
  bool most_recent = false;  // delayed: amax = last instead of the max over the window
  Device device;
  void* stream = nullptr;
};

// Largest finite value of an fp8 format (448 or 57344).
float fp8_max(DType fp8);
// Error unless every segment of p.dbias has an output and lies inside [0, p.cols).
void check_dbias_segments(const Fp8QuantizeDbiasParams& p);

namespace cpu {
void fp8_quantize(const Fp8QuantizeParams& p);
void fp8_quantize_dbias(const Fp8QuantizeDbiasParams& p);
void fp8_dequantize(const Fp8DequantizeParams& p);
void amax_reduce(const AmaxParams& p);
void fp8_gemm(const Fp8GemmParams& p);
void fp8_scale_update(const Fp8ScaleUpdateParams& p);
void fp8_act_quantize(const Fp8ActQuantizeParams& p);
void fp8_act_bwd_quantize(const Fp8ActBwdQuantizeParams& p);
}  // namespace cpu

inline void fp8_quantize(const Fp8QuantizeParams& p) { GRAFT_DISPATCH(fp8_quantize, p); }
inline void fp8_quantize_dbias(const Fp8QuantizeDbiasParams& p) {
  GRAFT_DISPATCH(fp8_quantize_dbias, p);
}
inline void fp8_dequantize(const Fp8DequantizeParams& p) { GRAFT_DISPATCH(fp8_dequantize, p); }
inline void amax_reduce(const AmaxParams& p) { GRAFT_DISPATCH(amax_reduce, p); }
// "fp8_gemm MxNxK fp8_e4m3 x fp8_e4m3->bf16" (the profile name under GRAFT_PROFILE_SHAPES).
std::string fp8_gemm_profile_name(const Fp8GemmParams& p);
inline void fp8_gemm(const Fp8GemmParams& p) {
  GRAFT_DISPATCH_DETAIL(fp8_gemm, p, fp8_gemm_profile_name(p));
}
inline void fp8_act_quantize(const Fp8ActQuantizeParams& p) { GRAFT_DISPATCH(fp8_act_quantize, p); }
inline void fp8_scale_update(const Fp8ScaleUpdateParams& p) { GRAFT_DISPATCH(fp8_scale_update, p); }
inline void fp8_act_bwd_quantize(const Fp8ActBwdQuantizeParams& p) {
  GRAFT_DISPATCH(fp8_act_bwd_quantize, p);
}

}  // namespace graft
