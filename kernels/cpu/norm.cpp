// CPU RMSNorm / LayerNorm, forward and backward, f32 storage with f64 row statistics.
// Math and accumulate rules: kernels/norm.h.
#include "kernels/norm.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

void check_fwd(const NormFwdParams& p, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_f32(p.dtype, name, "x/y");
  detail::check_f32(p.weight_dtype, name, "gamma/beta");
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows == 0 || (p.x && p.y && p.gamma), name, ": null x, y or gamma");
  GRAFT_CHECK(!p.residual || (p.residual_out && p.residual_out != p.y), name,
              ": a residual needs residual_out, distinct from y");
}

void check_bwd(const NormBwdParams& p, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_f32(p.dtype, name, "dy/x/dx");
  detail::check_f32(p.weight_dtype, name, "gamma");
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows == 0 || (p.dy && p.x && p.gamma && p.rstd && p.dx), name,
              ": null dy, x, gamma, rstd or dx");
}

// Effective scale g_j of column j.
inline double g_of(const float* gamma, int64_t j, bool zero_centered) {
  return zero_centered ? 1.0 + static_cast<double>(gamma[j]) : static_cast<double>(gamma[j]);
}

// Shared forward: `centered` selects LayerNorm (subtract the mean) over RMSNorm.
void norm_fwd(const NormFwdParams& p, bool centered) {
  const auto* x = static_cast<const float*>(p.x);
  if (p.residual) {  // s = x + residual, stored in f32 as a separate add would; then norm(s)
    const auto* res = static_cast<const float*>(p.residual);
    auto* s = static_cast<float*>(p.residual_out);
    for (int64_t i = 0; i < p.rows * p.cols; ++i) s[i] = x[i] + res[i];
    x = s;
  }
  const auto* gamma = static_cast<const float*>(p.gamma);
  const auto* beta = static_cast<const float*>(p.beta);
  auto* y = static_cast<float*>(p.y);
  const int64_t n = p.cols;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double mean = 0.0;
    if (centered) {
      for (int64_t j = 0; j < n; ++j) mean += xr[j];
      mean /= static_cast<double>(n);
    }
    double ss = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const double d = xr[j] - mean;
      ss += d * d;
    }
    const double rstd = 1.0 / std::sqrt(ss / static_cast<double>(n) + p.eps);
    for (int64_t j = 0; j < n; ++j) {
      double v = (xr[j] - mean) * rstd * g_of(gamma, j, p.zero_centered_gamma);
      if (beta) v += beta[j];
      yr[j] = static_cast<float>(v);
    }
    if (p.rstd) p.rstd[r] = static_cast<float>(rstd);
    if (p.mean && centered) p.mean[r] = static_cast<float>(mean);
  }
}

void norm_bwd(const NormBwdParams& p, bool centered) {
  const auto* dy = static_cast<const float*>(p.dy);
  const auto* x = static_cast<const float*>(p.x);
  const auto* gamma = static_cast<const float*>(p.gamma);
  auto* dx = static_cast<float*>(p.dx);
  const auto* dres = static_cast<const float*>(p.dresidual);
  const int64_t n = p.cols;
  std::vector<double> dgamma(p.dgamma ? n : 0, 0.0), dbeta(p.dbeta ? n : 0, 0.0);
  std::vector<double> xhat(n), dxhat(n);
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* xr = x + r * n;
    const float* dyr = dy + r * n;
    const double rstd = p.rstd[r];
    const double mean = centered ? static_cast<double>(p.mean[r]) : 0.0;
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      xhat[j] = (xr[j] - mean) * rstd;
      dxhat[j] = dyr[j] * g_of(gamma, j, p.zero_centered_gamma);
      sum_dxhat += dxhat[j];
      sum_dxhat_xhat += dxhat[j] * xhat[j];
      if (p.dgamma) dgamma[j] += dyr[j] * xhat[j];
      if (p.dbeta) dbeta[j] += dyr[j];
    }
    const double a = sum_dxhat_xhat / static_cast<double>(n);
    const double b = centered ? sum_dxhat / static_cast<double>(n) : 0.0;
    float* dxr = dx + r * n;  // written after every read of dy[r] (dx may alias dy)
    const float* dresr = dres ? dres + r * n : nullptr;  // read before dx[j] is written
    for (int64_t j = 0; j < n; ++j) {
      const double d = rstd * (dxhat[j] - b - xhat[j] * a);
      dxr[j] = static_cast<float>(dresr ? d + static_cast<double>(dresr[j]) : d);
    }
  }
  for (int64_t j = 0; j < static_cast<int64_t>(dgamma.size()); ++j)
    p.dgamma[j] = (p.accumulate ? p.dgamma[j] : 0.0f) + static_cast<float>(dgamma[j]);
  for (int64_t j = 0; j < static_cast<int64_t>(dbeta.size()); ++j)
    p.dbeta[j] = (p.accumulate ? p.dbeta[j] : 0.0f) + static_cast<float>(dbeta[j]);
}

}  // namespace

void rmsnorm_fwd(const NormFwdParams& p) {
  check_fwd(p, "rmsnorm_fwd");
  GRAFT_CHECK(!p.beta && !p.mean, "rmsnorm_fwd: RMSNorm has no beta and saves no mean");
  norm_fwd(p, false);
}

void rmsnorm_bwd(const NormBwdParams& p) {
  check_bwd(p, "rmsnorm_bwd");
  GRAFT_CHECK(!p.dbeta, "rmsnorm_bwd: RMSNorm has no beta");
  norm_bwd(p, false);
}

void layernorm_fwd(const NormFwdParams& p) {
  check_fwd(p, "layernorm_fwd");
  norm_fwd(p, true);
}

void layernorm_bwd(const NormBwdParams& p) {
  check_bwd(p, "layernorm_bwd");
  GRAFT_CHECK(p.rows == 0 || p.mean, "layernorm_bwd: null mean (save it in the forward)");
  norm_bwd(p, true);
}

}  // namespace graft::cpu
