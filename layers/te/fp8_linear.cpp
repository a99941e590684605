#include "layers/te/fp8_linear.h"

#include "kernels/fp8.h"

namespace graft::te {
namespace {

// C [m, n] (beta: 0 write, 1 accumulate) = A [m, k] · B [n, k]ᵀ (+ bias [n], the epilogue) on
// FP8 operands.
void gemm(const void* a, DType at, const float* a_si, const void* b, DType bt, const float* b_si,
          Tensor& c, int64_t m, int64_t n, int64_t k, float beta, bool fast,
          const Tensor& bias = Tensor()) {
  if (m == 0 || n == 0) return;
  Fp8GemmParams p;
  p.a = a;
  p.b = b;
  p.c = c.raw();
  p.a_dtype = at;
  p.b_dtype = bt;
  p.c_dtype = c.dtype();
  p.m = m;
  p.n = n;
  p.k = k;
  p.a_scale_inv = a_si;
  p.b_scale_inv = b_si;
  p.beta = beta;
  p.fast_accum = fast;
  if (bias.defined()) {
    GRAFT_CHECK(bias.numel() == n && bias.is_contiguous() && bias.device() == c.device(),
                "fp8 linear: bias ", bias.str(), " for ", n, " output columns");
    p.bias = bias.raw();
    p.bias_dtype = bias.dtype();
  }
  p.device = c.device();
  if (k == 0) {  // an empty sum: C = beta C (the layers' GEMMs with a bias have k = in > 0)
    GRAFT_CHECK(!bias.defined(), "fp8 linear: a bias with k = 0");
    if (beta == 0.0f) c.zero_();
    return;
  }
  fp8_gemm(p);
}

}  // namespace

Fp8Linear::Fp8Linear(std::shared_ptr<Fp8State> state, const Module* owner,
                     const std::string& prefix)
    : state_(std::move(state)) {
  input_ = state_->add_slot(owner, prefix + "fp8_input", Fp8Role::kInput);
  weight_ = state_->add_slot(owner, prefix + "fp8_weight", Fp8Role::kWeight);
  grad_ = state_->add_slot(owner, prefix + "fp8_grad_output", Fp8Role::kGradOutput);
}

void Fp8Linear::refresh_weight(const std::function<Tensor()>& weight) {
  if (gen_ == state_->generation() && w_.defined()) return;
  Tensor w = weight();
  // The weight's amax is recorded by every first cast of a step (training or not: the weight is
  // the same either way).
  state_->cast(weight_, w, /*record=*/true, &w_, &wt_);
  gen_ = state_->generation();
}

Tensor Fp8Linear::forward(const Tensor& x, const std::function<Tensor()>& weight, Fp8Operand* xt,
                          const Tensor& bias) {
  refresh_weight(weight);
  GRAFT_CHECK(w_.data.size(1) == x.size(1), "fp8 linear: x ", x.str(), " against W ",
              w_.data.str());
  Fp8Operand xq;
  state_->cast(input_, x, /*record=*/xt != nullptr, &xq, xt);
  return fprop(xq, x, bias);
}

Tensor Fp8Linear::forward_activated(const Tensor& h, Activation act, int64_t cols,
                                    const std::function<Tensor()>& weight, Fp8Operand* xt,
                                    const Tensor& bias) {
  refresh_weight(weight);
  GRAFT_CHECK(w_.data.size(1) == cols, "fp8 linear: ", cols, " activations against W ",
              w_.data.str());
  Fp8Operand xq;
  state_->cast_activation(input_, h, act, cols, /*record=*/xt != nullptr, &xq, xt);
  return fprop(xq, h, bias);
}

Tensor Fp8Linear::forward_normed(const Tensor& xn, const Tensor& gamma, const Tensor& beta,
                                 const layers::NormSpec& spec,
                                 const std::function<Tensor()>& weight, Fp8Operand* xt,
                                 layers::NormSaved* norm, const Tensor& bias) {
  refresh_weight(weight);
  GRAFT_CHECK(w_.data.size(1) == xn.size(1), "fp8 linear: x ", xn.str(), " against W ",
              w_.data.str());
  Fp8Operand xq;
  state_->cast_norm(input_, xn, gamma, beta, spec, /*record=*/xt != nullptr, norm, &xq, xt);
  return fprop(xq, gamma, bias);  // in the activations' dtype (xn may be an f32 residual stream)
}

Tensor Fp8Linear::fprop(const Fp8Operand& xq, const Tensor& like, const Tensor& bias) {
  const int64_t rows = xq.data.size(0), in = xq.data.size(1), out = w_.data.size(0);
  Tensor y = Tensor::empty({rows, out}, like.dtype(), like.device());
  Fp8Profile::Scope timed(state_->profile(), "gemm_fprop");
  gemm(xq.data.raw(), xq.dtype(), xq.scale_inv_ptr(), w_.data.raw(), w_.dtype(), w_.scale_inv_ptr(),
       y, rows, out, in, 0.0f, /*fast=*/true, bias);
  return y;
}

Tensor Fp8Linear::backward(const Tensor& dy, const Fp8Operand& xt,
                           const std::vector<GradBlock>& grads) {
  GRAFT_CHECK(wt_.defined() && xt.defined(), "fp8 linear backward without its forward");
  GRAFT_CHECK(xt.data.size(1) == dy.size(0) && wt_.data.size(1) == dy.size(1),
              "fp8 linear backward: dy ", dy.str(), ", xᵀ ", xt.data.str(), ", Wᵀ ",
              wt_.data.str());
  // The bias gradients come out of dy's cast (fp8_quantize_dbias), one segment per block.
  std::vector<Fp8DbiasSegment> dbias;
  for (const GradBlock& g : grads) {
    if (!g.bias) continue;
    const float beta = grad_beta(*g.bias);  // 0: stale or new, the sums overwrite it
    Tensor& db = g.bias->grad;
    GRAFT_CHECK(db.dtype() == DType::kF32 && db.numel() == g.size && db.is_contiguous() &&
                    g.offset + g.size <= dy.size(1),
                "fp8 linear backward: bias gradient of block at ", g.offset, ": ", db.str());
    dbias.push_back({static_cast<float*>(db.raw()), g.offset, g.size, beta != 0.0f});
  }
  Fp8Operand dyq, dyt;
  state_->cast(grad_, dy, /*record=*/true, &dyq, &dyt, dbias.empty() ? nullptr : &dbias);
  return bprop(dyq, dyt, xt, grads, dy.dtype(), dy.device());
}

Tensor Fp8Linear::backward_activated(const Tensor& da, const Tensor& h, Activation act,
                                     const Fp8Operand& xt, const std::vector<GradBlock>& grads) {
  GRAFT_CHECK(wt_.defined() && xt.defined(), "fp8 linear backward without its forward");
  GRAFT_CHECK(xt.data.size(1) == da.size(0) && wt_.data.size(1) == h.size(1),
              "fp8 linear backward: h ", h.str(), ", xᵀ ", xt.data.str(), ", Wᵀ ", wt_.data.str());
  for (const GradBlock& g : grads)
    GRAFT_CHECK(!g.bias, "fp8 linear backward_activated: a bias (block at ", g.offset, ")");
  Fp8Operand dyq, dyt;
  state_->cast_activation_grad(grad_, da, h, act, &dyq, &dyt);
  return bprop(dyq, dyt, xt, grads, da.dtype(), da.device());
}

Tensor Fp8Linear::bprop(const Fp8Operand& dyq, const Fp8Operand& dyt, const Fp8Operand& xt,
                        const std::vector<GradBlock>& grads, DType dtype, Device device) {
  const int64_t rows = dyq.data.size(0), out = dyq.data.size(1), in = xt.data.size(0);
  Tensor dx = Tensor::empty({rows, in}, dtype, device);
  {
    Fp8Profile::Scope timed(state_->profile(), "gemm_dgrad");
    gemm(dyq.data.raw(), dyq.dtype(), dyq.scale_inv_ptr(), wt_.data.raw(), wt_.dtype(),
         wt_.scale_inv_ptr(), dx, rows, in, out, 0.0f, /*fast=*/false);
  }
  Fp8Profile::Scope timed(state_->profile(), "gemm_wgrad");
  for (const GradBlock& g : grads) {
    GRAFT_CHECK(g.weight, "fp8 linear backward: no weight for the block at ", g.offset);
    const float beta = grad_beta(*g.weight);
    Tensor& dw = g.weight->grad;
    GRAFT_CHECK(dw.dtype() == DType::kF32 && dw.shape() == Shape({g.size, in}),
                "fp8 linear backward: weight gradient of block at ", g.offset, ": ", dw.str());
    const auto* a = static_cast<const uint8_t*>(dyt.data.raw()) + g.offset * rows;
    gemm(a, dyt.dtype(), dyt.scale_inv_ptr(), xt.data.raw(), xt.dtype(), xt.scale_inv_ptr(), dw,
         g.size, in, rows, beta, /*fast=*/false);
  }
  return dx;
}

}  // namespace graft::te
