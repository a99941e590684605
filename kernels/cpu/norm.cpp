// CPU RMSNorm / LayerNorm, forward and backward: f32, bf16 or f16 storage (each tensor in the
// dtype kernels/norm.h gives it, so also the f32 residual stream with 16-bit activations), f64
// row statistics. Math and accumulate rules: kernels/norm.h.
#include "kernels/norm.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

using detail::load;
using detail::store;

void check_fwd(const NormFwdParams& p, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_float(p.dtype, name, "y");
  detail::check_float(p.x_type(), name, "x");
  detail::check_float(p.residual_type(), name, "residual");
  detail::check_float(p.weight_dtype, name, "gamma/beta");
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows == 0 || (p.x && p.y && p.gamma), name, ": null x, y or gamma");
  GRAFT_CHECK(!p.residual || (p.residual_out && p.residual_out != p.y), name,
              ": a residual needs residual_out, distinct from y");
}

void check_bwd(const NormBwdParams& p, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_float(p.dtype, name, "dy");
  detail::check_float(p.residual_type(), name, "x/dx/dresidual");
  detail::check_float(p.weight_dtype, name, "gamma");
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": bad shape [", p.rows, ", ", p.cols, "]");
  GRAFT_CHECK(p.rows == 0 || (p.dy && p.x && p.gamma && p.rstd && p.dx), name,
              ": null dy, x, gamma, rstd or dx");
}

// Effective scale g_j of column j.
inline double g_of(const void* gamma, DType t, int64_t j, bool zero_centered) {
  const double g = load(gamma, t, j);
  return zero_centered ? 1.0 + g : g;
}

// Shared forward: `centered` selects LayerNorm (subtract the mean) over RMSNorm.
void norm_fwd(const NormFwdParams& p, bool centered) {
  const void* x = p.x;
  DType xt = p.x_type();
  if (p.residual) {  // s = x + residual, stored in the residual's dtype as a separate add would
    const DType rt = p.residual_type();
    for (int64_t i = 0; i < p.rows * p.cols; ++i)
      store(p.residual_out, rt, i, load(p.x, p.dtype, i) + load(p.residual, rt, i));
    x = p.residual_out;
    xt = rt;
  }
  const DType wt = p.weight_dtype;
  const int64_t n = p.cols;
  std::vector<double> xr(n);
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t j = 0; j < n; ++j) xr[j] = load(x, xt, r * n + j);
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
      double v = (xr[j] - mean) * rstd * g_of(p.gamma, wt, j, p.zero_centered_gamma);
      if (p.beta) v += load(p.beta, wt, j);
      store(p.y, p.dtype, r * n + j, static_cast<float>(v));
    }
    if (p.rstd) p.rstd[r] = static_cast<float>(rstd);
    if (p.mean && centered) p.mean[r] = static_cast<float>(mean);
  }
}

void norm_bwd(const NormBwdParams& p, bool centered) {
  const DType dt = p.dtype, xt = p.residual_type(), wt = p.weight_dtype;
  const int64_t n = p.cols;
  std::vector<double> dgamma(p.dgamma ? n : 0, 0.0), dbeta(p.dbeta ? n : 0, 0.0);
  std::vector<double> xhat(n), dxhat(n), dyr(n);
  for (int64_t r = 0; r < p.rows; ++r) {
    const double rstd = p.rstd[r];
    const double mean = centered ? static_cast<double>(p.mean[r]) : 0.0;
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      dyr[j] = load(p.dy, dt, r * n + j);
      xhat[j] = (load(p.x, xt, r * n + j) - mean) * rstd;
      dxhat[j] = dyr[j] * g_of(p.gamma, wt, j, p.zero_centered_gamma);
      sum_dxhat += dxhat[j];
      sum_dxhat_xhat += dxhat[j] * xhat[j];
      if (p.dgamma) dgamma[j] += dyr[j] * xhat[j];
      if (p.dbeta) dbeta[j] += dyr[j];
    }
    const double a = sum_dxhat_xhat / static_cast<double>(n);
    const double b = centered ? sum_dxhat / static_cast<double>(n) : 0.0;
    // dx written after every read of dy[r] (dx may alias dy), dresidual[j] read before dx[j]
    for (int64_t j = 0; j < n; ++j) {
      double d = rstd * (dxhat[j] - b - xhat[j] * a);
      if (p.dresidual) d += load(p.dresidual, xt, r * n + j);
      store(p.dx, xt, r * n + j, static_cast<float>(d));
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
