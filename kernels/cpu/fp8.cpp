// CPU reference of kernels/fp8.h: the emulation CI runs and the CUDA kernels are tested against.
#include "kernels/fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_util.h"
#include "kernels/gemm.h"

namespace graft {

float fp8_max(DType fp8) {
  GRAFT_CHECK(fp8 == DType::kF8E4M3 || fp8 == DType::kF8E5M2, "fp8_max: ", dtype_name(fp8),
              " is not an fp8 format");
  return fp8 == DType::kF8E4M3 ? 448.0f : 57344.0f;
}

void check_dbias_segments(const Fp8QuantizeDbiasParams& p) {
  for (const Fp8DbiasSegment& s : p.dbias)
    GRAFT_CHECK(s.out && s.offset >= 0 && s.size >= 0 && s.offset + s.size <= p.cols,
                "fp8_quantize_dbias: bias segment [", s.offset, ", +", s.size, ") of ", p.cols,
                " columns", s.out ? "" : " has no output");
}

namespace cpu {
namespace {

// The cast from the f32 bits: the significand shifted right to the format's precision at the
// value's exponent (subnormals: the fixed quantum below the smallest normal), rounded to nearest
// even on the bits shifted out, saturating to the largest finite code (inf too), NaN to 0x7f.
// The same results as framework/core/dtype.cpp's f32_to_fp8_e4m3 / _e5m2 (checked at every
// midpoint by tests/kernels/fp8_scale_test.cpp) without their frexp/ldexp per element: emulated
// training casts millions of elements per step. Decoding is a table of the 256 codes.
struct Fp8Format {
  int man, bias;
  uint32_t max_code;  // largest finite code: 0x7e (E4M3, 448), 0x7b (E5M2, 57344)
  float value[256];
};
Fp8Format make_format(bool e4m3) {
  Fp8Format f{};
  f.man = e4m3 ? 3 : 2;
  f.bias = e4m3 ? 7 : 15;
  f.max_code = e4m3 ? 0x7e : 0x7b;
  for (int c = 0; c < 256; ++c)
    f.value[c] =
        e4m3 ? fp8_e4m3_to_f32(static_cast<uint8_t>(c)) : fp8_e5m2_to_f32(static_cast<uint8_t>(c));
  return f;
}
const Fp8Format& format_of(DType t) {
  static const Fp8Format e4 = make_format(true), e5 = make_format(false);
  return t == DType::kF8E4M3 ? e4 : e5;
}
uint8_t encode(float v, const Fp8Format& f) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return 0x7f;  // NaN
  if ((u >> 23) == 0) return sign;   // zero or an f32 subnormal: far below FP8's
  const int e = static_cast<int>(u >> 23) - 127, emin = 1 - f.bias;
  const uint32_t mant = (u & 0x7fffffu) | 0x800000u;  // 1.m as a 24-bit integer
  const int shift = 23 - f.man + std::max(0, emin - e);
  if (shift > 24) return sign;  // below half the smallest subnormal
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  // Normal: exponent field e + bias, q in [2^man, 2^(man+1)] (a carry moves to the next
  // exponent by itself); subnormal: q is the code.
  uint32_t bits = e >= emin ? (static_cast<uint32_t>(e + f.bias) << f.man) + q - (1u << f.man) : q;
  if (e > 30 || bits > f.max_code) bits = f.max_code;
  return sign | static_cast<uint8_t>(bits);
}

uint8_t to_fp8(float v, DType t) { return encode(v, format_of(t)); }
float from_fp8(uint8_t v, DType t) { return format_of(t).value[v]; }
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
  const Fp8Format& f = format_of(p.fp8);
  const float* xf = p.x_dtype == DType::kF32 ? static_cast<const float*>(p.x) : nullptr;
  float amax = 0.0f;
  constexpr int64_t kT = 32;  // tiles, so that the transposed writes stay in cache
  uint8_t tile[kT][kT];
  for (int64_t r0 = 0; r0 < p.rows; r0 += kT)
    for (int64_t c0 = 0; c0 < p.cols; c0 += kT) {
      const int64_t nr = std::min(kT, p.rows - r0), nc = std::min(kT, p.cols - c0);
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = 0; j < nc; ++j) {
          const int64_t at = (r0 + i) * p.cols + c0 + j;
          const float x = xf ? xf[at] : detail::load(p.x, p.x_dtype, at);
          amax = nan_max(amax, std::fabs(x));
          const uint8_t v = encode(x * s, f);
          if (q) q[at] = v;
          tile[i][j] = v;
        }
      if (qt)
        for (int64_t j = 0; j < nc; ++j)
          for (int64_t i = 0; i < nr; ++i) qt[(c0 + j) * p.rows + r0 + i] = tile[i][j];
    }
  if (p.amax) *p.amax = nan_max(*p.amax, amax);
  if (p.scale_inv) *p.scale_inv = 1.0f / s;
}

void fp8_quantize_dbias(const Fp8QuantizeDbiasParams& p) {
  detail::check_cpu(p.device, "fp8_quantize_dbias");
  check_dbias_segments(p);
  cpu::fp8_quantize(p);
  // Column sums of the high-precision x in f64, a row-major walk, rounded once (sum_rows' math).
  for (const Fp8DbiasSegment& s : p.dbias) {
    std::vector<double> acc(static_cast<size_t>(s.size), 0.0);
    for (int64_t r = 0; r < p.rows; ++r)
      for (int64_t j = 0; j < s.size; ++j)
        acc[j] += detail::load(p.x, p.x_dtype, r * p.cols + s.offset + j);
    for (int64_t j = 0; j < s.size; ++j)
      s.out[j] = (s.accumulate ? s.out[j] : 0.0f) + static_cast<float>(acc[j]);
  }
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
  g.bias = p.bias;  // added in f32 before C is rounded, as the epilogue does
  g.bias_dtype = p.bias_dtype;
  g.device = p.device;
  cpu::gemm(g);
}

void fp8_act_quantize(const Fp8ActQuantizeParams& p) {
  detail::check_cpu(p.device, "fp8_act_quantize");
  GRAFT_CHECK(p.h_dtype == DType::kF32, "fp8_act_quantize: the CPU path takes f32, got ",
              dtype_name(p.h_dtype));
  std::vector<float> a(static_cast<size_t>(p.rows * p.cols));
  ActFwdParams f;
  f.x = p.h;
  f.y = a.data();
  f.rows = p.rows;
  f.cols = p.cols;
  f.act = p.act;
  f.dtype = DType::kF32;
  f.device = p.device;
  cpu::activation_fwd(f);
  cpu::fp8_quantize(quantize_params_of(p, a.data(), DType::kF32));
}

void fp8_act_bwd_quantize(const Fp8ActBwdQuantizeParams& p) {
  detail::check_cpu(p.device, "fp8_act_bwd_quantize");
  GRAFT_CHECK(p.dtype == DType::kF32, "fp8_act_bwd_quantize: the CPU path takes f32, got ",
              dtype_name(p.dtype));
  const int64_t hcols = activation_is_gated(p.act) ? 2 * p.cols : p.cols;
  std::vector<float> dh(static_cast<size_t>(p.rows * hcols));
  ActBwdParams b;
  b.dy = p.da;
  b.x = p.h;
  b.dx = dh.data();
  b.rows = p.rows;
  b.cols = p.cols;
  b.act = p.act;
  b.dtype = DType::kF32;
  b.device = p.device;
  cpu::activation_bwd(b);
  Fp8QuantizeParams q;
  q.x = dh.data();
  q.x_dtype = DType::kF32;
  q.q = p.q;
  q.qt = p.qt;
  q.fp8 = p.fp8;
  q.rows = p.rows;
  q.cols = hcols;
  q.scale = p.scale;
  q.amax = p.amax;
  q.scale_inv = p.scale_inv;
  q.device = p.device;
  cpu::fp8_quantize(q);
}

void fp8_scale_update(const Fp8ScaleUpdateParams& p) {
  detail::check_cpu(p.device, "fp8_scale_update");
  GRAFT_CHECK(p.len >= 1 && (!p.current || p.len == 1), "fp8_scale_update: len = ", p.len,
              (p.current ? " (current scaling has no history)" : ""));
  for (int64_t i = 0; i < p.n; ++i) {
    float* h = p.history + i;  // column i, stride n
    const float last = h[0];
    float amax = 0.0f;
    if (p.current) {
      amax = last;
      h[0] = 0.0f;
    } else if (last != 0.0f) {
      for (int64_t j = 0; j < p.len; ++j) amax = nan_max(amax, h[j * p.n]);
      for (int64_t j = 0; j + 1 < p.len; ++j) h[j * p.n] = h[(j + 1) * p.n];
      h[(p.len - 1) * p.n] = last;
      h[0] = 0.0f;
      if (p.most_recent) amax = last;
    }
    if (std::isfinite(amax) && amax > 0.0f) {
      float s = p.scaled_max[i] / amax;
      if (std::isinf(s)) s = std::numeric_limits<float>::max();
      p.scale[i] = s;
    } else if (p.current) {
      p.scale[i] = 1.0f;
    }
  }
}

}  // namespace cpu
}  // namespace graft
