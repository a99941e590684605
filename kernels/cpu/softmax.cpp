// CPU row softmax, f32 storage with f64 sums. Math: kernels/softmax.h.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {

void softmax_fwd(const SoftmaxFwdParams& p) {
  detail::check_cpu(p.device, "softmax_fwd");
  detail::check_f32(p.dtype, "softmax_fwd", "x/y");
  GRAFT_CHECK(p.rows >= 0 && p.cols >= 0, "softmax_fwd: bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows * p.cols == 0 || (p.x && p.y), "softmax_fwd: null x or y");
  const auto* x = static_cast<const float*>(p.x);
  auto* y = static_cast<float*>(p.y);
  const double s = p.scale;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* xr = x + r * p.cols;
    float* yr = y + r * p.cols;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < p.cols; ++j) mx = std::max(mx, s * xr[j]);
    if (mx == -std::numeric_limits<double>::infinity()) {  // all -inf: zeros, not NaN
      for (int64_t j = 0; j < p.cols; ++j) yr[j] = 0.0f;
      continue;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < p.cols; ++j) sum += std::exp(s * xr[j] - mx);
    for (int64_t j = 0; j < p.cols; ++j) yr[j] = static_cast<float>(std::exp(s * xr[j] - mx) / sum);
  }
}

void softmax_bwd(const SoftmaxBwdParams& p) {
  detail::check_cpu(p.device, "softmax_bwd");
  detail::check_f32(p.dtype, "softmax_bwd", "dy/y/dx");
  GRAFT_CHECK(p.rows >= 0 && p.cols >= 0, "softmax_bwd: bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows * p.cols == 0 || (p.dy && p.y && p.dx), "softmax_bwd: null dy, y or dx");
  const auto* dy = static_cast<const float*>(p.dy);
  const auto* y = static_cast<const float*>(p.y);
  auto* dx = static_cast<float*>(p.dx);
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* dyr = dy + r * p.cols;
    const float* yr = y + r * p.cols;
    double dot = 0.0;
    for (int64_t j = 0; j < p.cols; ++j) dot += static_cast<double>(dyr[j]) * yr[j];
    float* dxr = dx + r * p.cols;
    for (int64_t j = 0; j < p.cols; ++j)
      dxr[j] = static_cast<float>(p.scale * static_cast<double>(yr[j]) * (dyr[j] - dot));
  }
}

}  // namespace graft::cpu
