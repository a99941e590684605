#include "layers/reference/common.h"

#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace graft::layers {
namespace {

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

int64_t ld_of(const Tensor& m) {
  GRAFT_CHECK(m.ndim() == 2 && m.strides()[1] == 1 && is_float_dtype(m.dtype()),
              "expected a floating-point matrix with contiguous columns, got ", m.str());
  return m.strides()[0];
}

// A and B share one dtype; C (and the bias, which must match C or be f32) may differ: bf16
// activations with f32 accumulation into f32 weight gradients.
void set_dtypes(GemmParams& p, const Tensor& a, const Tensor& b, const Tensor& c,
                const Tensor& bias) {
  GRAFT_CHECK(a.dtype() == b.dtype(), "gemm operands differ in dtype: ", a.str(), " and ", b.str());
  p.dtype = a.dtype();
  p.c_dtype = c.dtype();
  p.bias_dtype = bias.defined() ? bias.dtype() : c.dtype();
}

}  // namespace

void check_params_dtype(const std::string& layer, DType dtype, Device device) {
  GRAFT_INPUT_CHECK(dtype == DType::kF32 || (dtype == DType::kBF16 && device.is_cuda()), layer,
                    ": params_dtype = ", dtype_name(dtype), " is not supported on ", device.str(),
                    " (f32 everywhere; bf16 on cuda)");
}

Tensor& grad_of(Parameter& p) { return grad_to_accumulate(p); }

Tensor as_rows(const Tensor& x, int64_t cols) {
  GRAFT_CHECK(x.defined() && x.ndim() >= 1 && x.size(-1) == cols, "expected [..., ", cols,
              "], got ", x.defined() ? x.str() : "an undefined tensor");
  Tensor c = x.is_contiguous() ? x : x.contiguous();
  return c.view({c.numel() / cols, cols});
}

void matmul_nt_into(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, float beta) {
  GRAFT_CHECK(x.size(1) == w.size(1) && y.size(0) == x.size(0) && y.size(1) == w.size(0),
              "matmul_nt: x ", x.str(), " w ", w.str(), " y ", y.str());
  GemmParams p;
  p.a = x.raw();
  p.b = w.raw();
  p.c = y.raw();
  p.bias = bias.defined() ? bias.raw() : nullptr;
  p.m = x.size(0);
  p.n = w.size(0);
  p.k = x.size(1);
  p.trans_b = true;
  p.lda = ld_of(x);
  p.ldb = ld_of(w);
  p.ldc = ld_of(y);
  p.beta = beta;
  set_dtypes(p, x, w, y, bias);
  p.device = x.device();
  if (p.m > 0) gemm(p);
}

Tensor matmul_nt(const Tensor& x, const Tensor& w, const Tensor& bias) {
  Tensor y = Tensor::empty({x.size(0), w.size(0)}, x.dtype(), x.device());
  matmul_nt_into(x, w, bias, y, 0.0f);
  return y;
}

void matmul_nn_into(const Tensor& dy, const Tensor& w, Tensor& dx, float beta) {
  GRAFT_CHECK(dy.size(1) == w.size(0) && dx.size(0) == dy.size(0) && dx.size(1) == w.size(1),
              "matmul_nn: dy ", dy.str(), " w ", w.str(), " dx ", dx.str());
  GemmParams p;
  p.a = dy.raw();
  p.b = w.raw();
  p.c = dx.raw();
  p.m = dy.size(0);
  p.n = w.size(1);
  p.k = dy.size(1);
  p.lda = ld_of(dy);
  p.ldb = ld_of(w);
  p.ldc = ld_of(dx);
  p.beta = beta;
  set_dtypes(p, dy, w, dx, Tensor());
  p.device = dy.device();
  if (p.m > 0) gemm(p);
}

Tensor matmul_nn(const Tensor& dy, const Tensor& w) {
  Tensor dx = Tensor::empty({dy.size(0), w.size(1)}, dy.dtype(), dy.device());
  matmul_nn_into(dy, w, dx, 0.0f);
  return dx;
}

void matmul_tn_into(const Tensor& dy, const Tensor& x, Tensor& dw, float beta) {
  GRAFT_CHECK(dy.size(0) == x.size(0) && dw.size(0) == dy.size(1) && dw.size(1) == x.size(1),
              "matmul_tn_into: dy ", dy.str(), " x ", x.str(), " dw ", dw.str());
  if (dy.size(0) == 0 && beta != 0.0f) return;  // k = 0 with beta = 0 writes zeros
  GemmParams p;
  p.a = dy.raw();
  p.b = x.raw();
  p.c = dw.raw();
  p.m = dy.size(1);
  p.n = x.size(1);
  p.k = dy.size(0);
  p.trans_a = true;
  p.lda = ld_of(dy);
  p.ldb = ld_of(x);
  p.ldc = ld_of(dw);
  p.beta = beta;
  set_dtypes(p, dy, x, dw, Tensor());
  p.device = dy.device();
  gemm(p);
}

void weight_grad(const Tensor& dy, const Tensor& x, Parameter& w) {
  const float beta = grad_beta(w);
  matmul_tn_into(dy, x, w.grad, beta);
}

void bias_grad(const Tensor& dy, Parameter& b) {
  if (dy.size(0) == 0) {  // nothing to add; a stale gradient still becomes zero
    grad_to_accumulate(b);
    return;
  }
  const float beta = grad_beta(b);
  GRAFT_CHECK(b.grad.numel() == dy.size(1) && b.grad.is_contiguous(), "bias_grad: dy ", dy.str(),
              " db ", b.grad.str());
  SumRowsParams p;
  p.x = dy.raw();
  p.out = static_cast<float*>(b.grad.raw());
  p.rows = dy.size(0);
  p.cols = dy.size(1);
  p.ld = ld_of(dy);
  p.accumulate = beta != 0.0f;
  p.dtype = dy.dtype();
  p.device = dy.device();
  sum_rows(p);
}

Tensor add(const Tensor& a, const Tensor& b) {
  GRAFT_CHECK(
      a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() && a.dtype() == b.dtype(),
      "add: ", a.str(), " + ", b.str());
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  AddParams p;
  p.a = a.raw();
  p.b = b.raw();
  p.out = out.raw();
  p.n = a.numel();
  p.dtype = a.dtype();
  p.device = a.device();
  if (p.n > 0) graft::add(p);
  return out;
}

void add_into(Tensor& y, const Tensor& x) {
  GRAFT_CHECK(
      y.numel() == x.numel() && y.is_contiguous() && x.is_contiguous() && y.dtype() == x.dtype(),
      "add_into: ", y.str(), " += ", x.str());
  AxpyParams p;
  p.x = x.raw();
  p.y = y.raw();
  p.n = x.numel();
  p.dtype = x.dtype();
  p.device = x.device();
  if (p.n > 0) axpy(p);
}

void cast_into(Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() || (dst.device().is_cpu() && src.device().is_cpu())) {
    dst.copy_from(src);
    return;
  }
  GRAFT_CHECK(dst.device() == src.device() && dst.is_contiguous() && src.is_contiguous() &&
                  dst.numel() == src.numel(),
              "cast_into: ", src.str(), " -> ", dst.str());
  CastParams p;
  p.src = src.raw();
  p.dst = dst.raw();
  p.n = src.numel();
  p.src_dtype = src.dtype();
  p.dst_dtype = dst.dtype();
  p.device = dst.device();
  if (p.n > 0) cast(p);
}

Tensor to_dtype(const Tensor& x, DType t) {
  if (x.dtype() == t) return x;
  Tensor out = Tensor::empty(x.shape(), t, x.device());
  cast_into(out, x.is_contiguous() ? x : x.contiguous());
  return out;
}

Tensor residual_add(const Tensor& stream, const Tensor& branch) {
  if (stream.dtype() == branch.dtype()) return add(stream, branch);
  GRAFT_CHECK(stream.shape() == branch.shape() && stream.dtype() == DType::kF32,
              "residual_add: ", stream.str(), " + ", branch.str(),
              " (the stream is f32 when the dtypes differ)");
  Tensor out = to_dtype(branch, stream.dtype());  // new: the widened branch, then += stream
  add_into(out, stream);
  return out;
}

void copy_matrix(Tensor& dst, const Tensor& src) {
  GRAFT_CHECK(dst.ndim() == 2 && src.ndim() == 2 && dst.size(0) == src.size(0) &&
                  dst.size(1) == src.size(1) && dst.dtype() == src.dtype(),
              "copy_matrix: ", dst.str(), " <- ", src.str());
  GRAFT_CHECK(dst.strides()[1] == 1 && src.strides()[1] == 1,
              "copy_matrix needs contiguous columns");
  Copy2dParams p;
  p.src = src.raw();
  p.dst = dst.raw();
  p.rows = src.size(0);
  p.cols = src.size(1);
  p.ld_src = src.strides()[0];
  p.ld_dst = dst.strides()[0];
  p.dtype = src.dtype();
  p.device = src.device();
  if (p.rows > 0 && p.cols > 0) copy_2d(p);
}

Tensor column_block(const Tensor& m, int64_t start, int64_t len) {
  Tensor out = Tensor::empty({m.size(0), len}, m.dtype(), m.device());
  copy_matrix(out, m.slice(1, start, len));
  return out;
}

}  // namespace graft::layers
