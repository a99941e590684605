// CPU reference of kernels/fp8_norm.h: the norm of kernels/cpu/norm.cpp into an f32 temporary,
// then the cast (or the amax) of kernels/cpu/fp8.cpp, so the emulation has exactly the
// quantisation of the unfused path on a CPU.
#include "kernels/fp8_norm.h"

#include <vector>

#include "kernels/cpu/cpu_util.h"
#include "kernels/fp8.h"
#include "kernels/norm.h"

namespace graft::cpu {

void fp8_norm_quantize(const Fp8NormQuantizeParams& p) {
  detail::check_cpu(p.device, "fp8_norm_quantize");
  detail::check_f32(p.dtype, "fp8_norm_quantize", "x");
  detail::check_f32(p.weight_dtype, "fp8_norm_quantize", "gamma/beta");
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, "fp8_norm_quantize: bad shape [", p.rows, ", ", p.cols,
              "]");
  const bool cast = p.q || p.qt;
  GRAFT_CHECK(!cast || p.scale, "fp8_norm_quantize: q or qt without a scale");
  GRAFT_CHECK(p.rstd && (!p.layer_norm || p.mean), "fp8_norm_quantize: null rstd or mean");
  if (cast) fp8_max(p.fp8);
  if (p.rows == 0) return;
  std::vector<float> y(static_cast<size_t>(p.rows * p.cols));
  NormFwdParams n;
  n.x = p.x;
  n.gamma = p.gamma;
  n.beta = p.layer_norm ? p.beta : nullptr;
  n.y = y.data();
  n.rstd = p.rstd;  // under stats_given the same values are written again
  n.mean = p.layer_norm ? p.mean : nullptr;
  n.rows = p.rows;
  n.cols = p.cols;
  n.eps = p.eps;
  n.zero_centered_gamma = p.zero_centered_gamma;
  n.device = p.device;
  if (p.layer_norm)
    cpu::layernorm_fwd(n);
  else
    cpu::rmsnorm_fwd(n);
  if (!cast) {
    if (!p.amax) return;
    AmaxParams a;
    a.x = y.data();
    a.n = p.rows * p.cols;
    a.amax = p.amax;
    a.device = p.device;
    cpu::amax_reduce(a);
    return;
  }
  cpu::fp8_quantize(quantize_params_of(p, y.data(), DType::kF32));
}

}  // namespace graft::cpu
