// CPU reference of kernels/fp8.h: the emulation CI runs and the CUDA kernels are tested against.
#include "kernels/fp8.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_util.h"
#include "kernels/gemm.h"

namespace graft {

float fp8_max(DType fp8) {
  GRAFT_CHECK(fp8 == DType::kF8E4M3 || fp8 == DType::kF8E5M2, "fp8_max: ", dtype_name(fp8),
              " is not an fp8 format");
  return fp8 == DType::kF8E4M3 ? 448.0f : 57344.0f;
}

namespace cpu {
namespace {

uint8_t to_fp8(float v, DType t) {
  return t == DType::kF8E4M3 ? f32_to_fp8_e4m3(v) : f32_to_fp8_e5m2(v);
}
float from_fp8(uint8_t v, DType t) {
  return t == DType::kF8E4M3 ? fp8_e4m3_to_f32(v) : fp8_e5m2_to_f32(v);
}
// max that lets NaN win (a NaN amax must reach the scale update, which then keeps the old scale).
float nan_max(float a, float b) { return (std::isnan(a) || std::isnan(b)) ? NAN : std::max(a, b); }

}  // namespace

void fp8_quantize(const Fp8QuantizeParams& p) {
  detail::check_cpu(p.device, "fp8_quantize");
  detail::check_float(p.x_dtype, "fp8_quantize", "x");
  fp8_max(p.fp8);
  GRAFT_CHECK(p.scale != nullptr, "fp8_quantize: no scale");
  const float s = *p.scale;
  auto* q = static_cast<uint8_t*>(p.q);
  auto* qt = static_cast<uint8_t*>(p.qt);
  float amax = 0.0f;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.cols; ++c) {
      const float x = detail::load(p.x, p.x_dtype, r * p.cols + c);
      amax = nan_max(amax, std::fabs(x));
      const uint8_t v = to_fp8(x * s, p.fp8);
      if (q) q[r * p.cols + c] = v;
      if (qt) qt[c * p.rows + r] = v;
    }
  if (p.amax) *p.amax = nan_max(*p.amax, amax);
  if (p.scale_inv) *p.scale_inv = 1.0f / s;
}

void fp8_dequantize(const Fp8DequantizeParams& p) {
  detail::check_cpu(p.device, "fp8_dequantize");
  detail::check_float(p.y_dtype, "fp8_dequantize", "y");
  fp8_max(p.fp8);
  const auto* q = static_cast<const uint8_t*>(p.q);
  for (int64_t i = 0; i < p.n; ++i)
    detail::store(p.y, p.y_dtype, i, from_fp8(q[i], p.fp8) * *p.scale_inv);
}

void amax_reduce(const AmaxParams& p) {
  detail::check_cpu(p.device, "amax_reduce");
  detail::check_float(p.dtype, "amax_reduce", "x");
  float amax = 0.0f;
  for (int64_t i = 0; i < p.n; ++i) amax = nan_max(amax, std::fabs(detail::load(p.x, p.dtype, i)));
  *p.amax = nan_max(*p.amax, amax);
}

void fp8_gemm(const Fp8GemmParams& p) {
  detail::check_cpu(p.device, "fp8_gemm");
  fp8_max(p.a_dtype);
  fp8_max(p.b_dtype);
  GRAFT_CHECK(p.c_dtype == DType::kF32 || p.c_dtype == DType::kBF16,
              "fp8_gemm: C must be f32 or "
              "bf16, got ",
              dtype_name(p.c_dtype));
  std::vector<float> a(static_cast<size_t>(p.m * p.k)), b(static_cast<size_t>(p.n * p.k));
  const auto* qa = static_cast<const uint8_t*>(p.a);
  const auto* qb = static_cast<const uint8_t*>(p.b);
  for (size_t i = 0; i < a.size(); ++i) a[i] = from_fp8(qa[i], p.a_dtype) * *p.a_scale_inv;
  for (size_t i = 0; i < b.size(); ++i) b[i] = from_fp8(qb[i], p.b_dtype) * *p.b_scale_inv;
  GemmParams g;
  g.a = a.data();
  g.b = b.data();
  g.c = p.c;
  g.m = p.m;
  g.n = p.n;
  g.k = p.k;
  g.trans_b = true;
  g.alpha = p.alpha;
  g.beta = p.beta;
  g.dtype = DType::kF32;
  g.c_dtype = p.c_dtype;
  g.device = p.device;
  cpu::gemm(g);
}

}  // namespace cpu
}  // namespace graft
