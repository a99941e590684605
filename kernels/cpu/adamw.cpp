// CPU AdamW (torch.optim.AdamW semantics) and the global gradient L2 norm.
// Math: kernels/adamw.h.
#include "kernels/adamw.h"

#include <cmath>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

void check_hyper(const AdamWHyper& h, const char* name) {
  GRAFT_CHECK(h.step >= 1, name, ": step = ", h.step, " must be >= 1 (1-based)");
  GRAFT_CHECK(h.beta1 >= 0 && h.beta1 < 1 && h.beta2 >= 0 && h.beta2 < 1, name, ": betas (",
              h.beta1, ", ", h.beta2, ") must lie in [0, 1)");
  GRAFT_CHECK(h.eps >= 0 && h.lr >= 0, name, ": lr = ", h.lr, ", eps = ", h.eps, " must be >= 0");
}

// One tensor's update; the bias corrections are computed in f64 as torch does on the host (or
// read from h.step_scalars).
void step_one(const AdamWTensor& t, const AdamWHyper& h, DType copy_dtype) {
  if (t.n == 0) return;
  GRAFT_CHECK(t.param && t.grad && t.m && t.v, "adamw: null param, grad, m or v");
  AdamWStepScalars sc = adamw_step_scalars(h.lr, h.beta1, h.beta2, h.step);
  if (h.step_scalars) sc = {h.step_scalars[0], h.step_scalars[1], h.step_scalars[2]};
  const float step_size = sc.step_size;
  const float bc2_sqrt = sc.bc2_sqrt;
  const float decay = 1.0f - sc.lr * t.weight_decay;
  const float b1 = h.beta1, b2 = h.beta2;
  for (int64_t i = 0; i < t.n; ++i) {
    const float g = t.grad[i] * h.grad_scale;
    float p = t.param[i] * decay;
    const float m = b1 * t.m[i] + (1.0f - b1) * g;
    const float v = b2 * t.v[i] + (1.0f - b2) * g * g;
    p -= step_size * m / (std::sqrt(v) / bc2_sqrt + h.eps);
    t.param[i] = p, t.m[i] = m, t.v[i] = v;
    if (t.param_copy) detail::store(t.param_copy, copy_dtype, i, p);
  }
}

// The device clip/skip prologue (kernels/adamw.h): false = skip; *scale = grad_scale · clip.
bool device_scale(float norm_sq, float loss, const AdamWHyper& h, float* scale) {
  const double norm = std::sqrt(static_cast<double>(norm_sq));
  if (!std::isfinite(norm) || !std::isfinite(loss)) return false;
  const double clip = (h.max_norm > 0 && norm > h.max_norm) ? h.max_norm / norm : 1.0;
  *scale = h.grad_scale * static_cast<float>(clip);
  return true;
}

}  // namespace

void adamw_step(const AdamWParams& p) {
  detail::check_cpu(p.device, "adamw_step");
  check_hyper(p.hyper, "adamw_step");
  GRAFT_CHECK(!p.param_copy || detail::is_half_or_f32(p.copy_dtype), "adamw_step: copy_dtype ",
              dtype_name(p.copy_dtype), " must be f32, bf16 or f16");
  AdamWHyper h = p.hyper;
  if (h.norm_sq && !device_scale(*h.norm_sq, h.loss ? *h.loss : 0.0f, h, &h.grad_scale)) return;
  step_one({p.param, p.grad, p.m, p.v, p.param_copy, p.n, p.hyper.weight_decay}, h, p.copy_dtype);
}

void adamw_multi_step(const AdamWMultiParams& p) {
  detail::check_cpu(p.device, "adamw_multi_step");
  check_hyper(p.hyper, "adamw_multi_step");
  GRAFT_CHECK(detail::is_half_or_f32(p.copy_dtype), "adamw_multi_step: copy_dtype ",
              dtype_name(p.copy_dtype), " must be f32, bf16 or f16");
  AdamWHyper h = p.hyper;
  if (h.norm_sq && !device_scale(*h.norm_sq, h.loss ? *h.loss : 0.0f, h, &h.grad_scale))
    return;  // non-finite norm or loss: skipped, nothing written
  for (const AdamWTensor& t : p.tensors) step_one(t, h, p.copy_dtype);
}

void grad_norm(const GradNormParams& p) {
  detail::check_cpu(p.device, "grad_norm");
  GRAFT_CHECK(p.grads.size() == p.sizes.size(), "grad_norm: ", p.grads.size(), " gradients but ",
              p.sizes.size(), " sizes");
  GRAFT_CHECK(p.out, "grad_norm: null out");
  double ss = 0.0;
  for (size_t t = 0; t < p.grads.size(); ++t) {
    GRAFT_CHECK(p.sizes[t] >= 0 && (p.sizes[t] == 0 || p.grads[t]), "grad_norm: tensor ", t,
                " has size ", p.sizes[t], " or a null pointer");
    for (int64_t i = 0; i < p.sizes[t]; ++i)
      ss += static_cast<double>(p.grads[t][i]) * p.grads[t][i];
  }
  *p.out = static_cast<float>(p.squared ? ss : std::sqrt(ss));
}

}  // namespace graft::cpu
