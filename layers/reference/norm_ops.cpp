#include "layers/reference/norm_ops.h"

#include "kernels/norm.h"

namespace graft::layers {

Tensor norm_rows_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const NormSpec& spec, NormSaved* save, const Tensor& residual,
                         Tensor* sum) {
  // The activations' dtype is gamma's; only the residual stream (x without a residual, the
  // residual with one) may be wider.
  const DType act = gamma.dtype();
  GRAFT_CHECK(x.ndim() == 2 && x.is_contiguous() &&
                  (x.dtype() == act || (!residual.defined() && x.dtype() == DType::kF32)),
              "norm: x ", x.str(), " gamma ", gamma.str());
  GRAFT_CHECK(
      !residual.defined() || (sum && residual.shape() == x.shape() && residual.is_contiguous() &&
                              (residual.dtype() == act || residual.dtype() == DType::kF32) &&
                              residual.device() == x.device()),
      "norm: residual ", residual.str(), " for x ", x.str(), " (and a sum to return)");
  const bool ln = spec.type == NormType::kLayerNorm;
  const int64_t rows = x.size(0);
  Tensor y = Tensor::empty(x.shape(), act, x.device());
  Tensor rstd = Tensor::empty({rows}, DType::kF32, x.device());
  Tensor mean = ln ? Tensor::empty({rows}, DType::kF32, x.device()) : Tensor();
  NormFwdParams p;
  p.x = x.raw();
  p.gamma = gamma.raw();
  p.beta = ln && beta.defined() ? beta.raw() : nullptr;
  p.y = y.raw();
  p.rstd = static_cast<float*>(rstd.raw());
  p.mean = ln ? static_cast<float*>(mean.raw()) : nullptr;
  p.rows = rows;
  p.cols = x.size(1);
  p.eps = static_cast<float>(spec.eps);
  p.zero_centered_gamma = spec.zero_centered_gamma;
  p.dtype = act;
  p.weight_dtype = gamma.dtype();
  const DType stream = residual.defined() ? residual.dtype() : x.dtype();
  if (stream != act) p.residual_dtype = stream;
  p.device = x.device();
  Tensor s = x;
  if (residual.defined()) {
    s = Tensor::empty(x.shape(), residual.dtype(), x.device());
    p.residual = residual.raw();
    p.residual_out = s.raw();
    *sum = s;
  }
  if (rows > 0) {
    if (ln)
      layernorm_fwd(p);
    else
      rmsnorm_fwd(p);
  }
  if (save) *save = NormSaved{s, rstd, mean};
  return y;
}

Tensor norm_rows_backward(const Tensor& dy, const NormSaved& s, const Tensor& gamma,
                          Parameter* dgamma, Parameter* dbeta, const NormSpec& spec,
                          const Tensor& dresidual) {
  GRAFT_CHECK(dy.shape() == s.x.shape() && dy.is_contiguous(), "norm backward: dy ", dy.str(),
              " x ", s.x.str());
  const bool ln = spec.type == NormType::kLayerNorm;
  // dy in the activations' dtype (gamma's); x, dx and dresidual in the residual stream's.
  const DType stream = s.x.dtype();
  GRAFT_CHECK(dy.dtype() == gamma.dtype() && (stream == dy.dtype() || stream == DType::kF32),
              "norm backward: dy ", dy.str(), " x ", s.x.str(), " gamma ", gamma.str());
  GRAFT_CHECK(
      !dresidual.defined() || (dresidual.numel() == dy.numel() && dresidual.is_contiguous() &&
                               dresidual.dtype() == stream && dresidual.device() == dy.device()),
      "norm backward: dresidual ", dresidual.str(), " for x ", s.x.str());
  Tensor dx = Tensor::empty(dy.shape(), stream, dy.device());
  if (!ln) dbeta = nullptr;
  // One flag for both gradients (one norm's, so stale together): written when every one given is
  // stale and there are rows to sum; otherwise a stale one is zeroed and both accumulate.
  const bool write = dy.size(0) > 0 && (!dgamma || grad_overwrites(*dgamma)) &&
                     (!dbeta || grad_overwrites(*dbeta));
  for (Parameter* q : {dgamma, dbeta}) {
    if (!q) continue;
    if (write)
      grad_beta(*q);
    else
      grad_to_accumulate(*q);
  }
  NormBwdParams p;
  p.dy = dy.raw();
  p.x = s.x.raw();
  p.gamma = gamma.raw();
  p.rstd = static_cast<const float*>(s.rstd.raw());
  p.mean = ln ? static_cast<const float*>(s.mean.raw()) : nullptr;
  p.dx = dx.raw();
  p.dresidual = dresidual.defined() ? dresidual.raw() : nullptr;
  p.dgamma = dgamma ? static_cast<float*>(dgamma->grad.raw()) : nullptr;
  p.dbeta = dbeta ? static_cast<float*>(dbeta->grad.raw()) : nullptr;
  p.accumulate = !write;
  p.rows = dy.size(0);
  p.cols = dy.size(1);
  p.zero_centered_gamma = spec.zero_centered_gamma;
  p.dtype = dy.dtype();
  p.weight_dtype = gamma.dtype();
  if (stream != dy.dtype()) p.residual_dtype = stream;
  p.device = dy.device();
  if (p.rows > 0) {
    if (ln)
      layernorm_bwd(p);
    else
      rmsnorm_bwd(p);
  }
  return dx;
}

}  // namespace graft::layers
