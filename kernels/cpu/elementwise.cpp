// CPU element-wise ops on f32/bf16/f16 storage (f32 arithmetic, f64 column sums).
// Math and accumulate rules: kernels/elementwise.h.
#include "kernels/elementwise.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

using detail::load;
using detail::store;

void check(const Device& dev, DType t, int64_t n, const char* name) {
  detail::check_cpu(dev, name);
  detail::check_float(t, name, "dtype");
  GRAFT_CHECK(n >= 0, name, ": n = ", n, " must be >= 0");
}

}  // namespace

void add(const AddParams& p) {
  check(p.device, p.dtype, p.n, "add");
  GRAFT_CHECK(p.n == 0 || (p.a && p.b && p.out), "add: null a, b or out");
  for (int64_t i = 0; i < p.n; ++i)
    store(p.out, p.dtype, i, load(p.a, p.dtype, i) + load(p.b, p.dtype, i));
}

void axpy(const AxpyParams& p) {
  check(p.device, p.dtype, p.n, "axpy");
  GRAFT_CHECK(p.n == 0 || (p.x && p.y), "axpy: null x or y");
  for (int64_t i = 0; i < p.n; ++i)
    store(p.y, p.dtype, i, load(p.y, p.dtype, i) + p.alpha * load(p.x, p.dtype, i));
}

void scale(const ScaleParams& p) {
  check(p.device, p.dtype, p.n, "scale");
  GRAFT_CHECK(p.n == 0 || p.x, "scale: null x");
  for (int64_t i = 0; i < p.n; ++i) store(p.x, p.dtype, i, p.alpha * load(p.x, p.dtype, i));
}

void fill(const FillParams& p) {
  check(p.device, p.dtype, p.n, "fill");
  GRAFT_CHECK(p.n == 0 || p.x, "fill: null x");
  for (int64_t i = 0; i < p.n; ++i) store(p.x, p.dtype, i, p.value);
}

void cast(const CastParams& p) {
  detail::check_cpu(p.device, "cast");
  detail::check_float(p.src_dtype, "cast", "src_dtype");
  detail::check_float(p.dst_dtype, "cast", "dst_dtype");
  GRAFT_CHECK(p.n >= 0 && (p.n == 0 || (p.src && p.dst)), "cast: n = ", p.n, " or null pointer");
  for (int64_t i = 0; i < p.n; ++i) store(p.dst, p.dst_dtype, i, load(p.src, p.src_dtype, i));
}

void copy_2d(const Copy2dParams& p) {
  detail::check_cpu(p.device, "copy_2d");
  const int64_t ls = p.ld_src ? p.ld_src : p.cols, ld = p.ld_dst ? p.ld_dst : p.cols;
  GRAFT_CHECK(p.rows >= 0 && p.cols >= 0 && ls >= p.cols && ld >= p.cols,
              "copy_2d: bad sizes rows = ", p.rows, ", cols = ", p.cols, ", ld_src = ", ls,
              ", ld_dst = ", ld);
  if (p.rows * p.cols == 0) return;
  GRAFT_CHECK(p.src && p.dst, "copy_2d: null src or dst");
  const size_t es = dtype_size(p.dtype);
  const auto* src = static_cast<const char*>(p.src);
  auto* dst = static_cast<char*>(p.dst);
  for (int64_t r = 0; r < p.rows; ++r)
    std::memmove(dst + r * ld * es, src + r * ls * es, static_cast<size_t>(p.cols) * es);
}

void sum_rows(const SumRowsParams& p) {
  check(p.device, p.dtype, p.rows, "sum_rows");
  const int64_t ld = p.ld ? p.ld : p.cols;
  GRAFT_CHECK(p.cols >= 0 && ld >= p.cols, "sum_rows: cols = ", p.cols, ", ld = ", ld);
  if (p.cols == 0) return;
  GRAFT_CHECK(p.out && (p.rows == 0 || p.x), "sum_rows: null x or out");
  std::vector<double> acc(static_cast<size_t>(p.cols), 0.0);  // row-major walk, f64 sums
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < p.cols; ++c) acc[c] += load(p.x, p.dtype, r * ld + c);
  for (int64_t c = 0; c < p.cols; ++c)
    p.out[c] = (p.accumulate ? p.out[c] : 0.0f) + static_cast<float>(acc[c]);
}

}  // namespace graft::cpu
