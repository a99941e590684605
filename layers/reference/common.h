// Small helpers shared by the reference and TE-style layers: parameter checks, row views and
// the few matrix/element-wise ops every layer needs. All math goes through the kernel entry
// points (kernels/gemm.h, kernels/elementwise.h) with the device taken from the tensors, so the
// same layer code runs on the CPU and on CUDA.
//
// "Matrix" arguments are 2-D f32 or bf16 tensors whose columns are contiguous (stride(1) == 1);
// the row stride may be larger (a column block of a fused buffer: t.slice(1, start, len)).
// Activations carry the parameters' dtype (bf16 on a GPU run): new outputs take the dtype of the
// input, GEMMs accumulate in f32, and weight/bias gradients are always f32, written by the step's
// first contribution and accumulated by the rest (lazy zeroing: framework/core/parameter.h), so
// every write into a gradient goes through weight_grad, bias_grad or grad_of.
#pragma once

#include <cstdint>
#include <string>

#include "framework/core/tensor.h"
#include "framework/registry/module.h"

namespace graft::layers {

// Parameters are f32, or bf16 on CUDA. Anything else is an InputError naming the layer and dtype.
void check_params_dtype(const std::string& layer, DType dtype, Device device);

// The parameter's f32 gradient to accumulate into: allocated (zeros) on first use, zeroed when
// stale (grad_to_accumulate). For kernels that can only add; the others use weight_grad/bias_grad.
Tensor& grad_of(Parameter& p);

// x viewed as a contiguous [rows, cols] matrix (copied only when x is not contiguous).
Tensor as_rows(const Tensor& x, int64_t cols);

// y = x · Wᵀ (+ bias): x [rows, in], W [out, in] -> new [rows, out].
Tensor matmul_nt(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());
// Same, written (beta = 0) or accumulated (beta = 1) into an existing matrix `y`.
void matmul_nt_into(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, float beta);
// dx = dy · W: dy [rows, out], W [out, in] -> new [rows, in].
Tensor matmul_nn(const Tensor& dy, const Tensor& w);
// dx (+)= dy · W into an existing matrix.
void matmul_nn_into(const Tensor& dy, const Tensor& w, Tensor& dx, float beta);
// dw (beta = 0: =, 1: +=) dyᵀ · x: dy [rows, out], x [rows, in], dw [out, in] (f32).
void matmul_tn_into(const Tensor& dy, const Tensor& x, Tensor& dw, float beta);
// w.grad (+)= dyᵀ · x: written when stale (beta = 0), else accumulated (grad_beta).
void weight_grad(const Tensor& dy, const Tensor& x, Parameter& w);
// b.grad (+)= Σ_rows dy: dy [rows, out], b [out]; written when stale, else accumulated.
void bias_grad(const Tensor& dy, Parameter& b);

// a + b (same shape, contiguous) -> new tensor.
Tensor add(const Tensor& a, const Tensor& b);
// y += x (same numel, contiguous).
void add_into(Tensor& y, const Tensor& x);
// dst = src converted to dst's dtype (same element count, contiguous); on a GPU through the cast
// kernel, since Tensor::copy_from converts dtypes only on the host.
void cast_into(Tensor& dst, const Tensor& src);
// x in dtype `t`: x itself when it has it, else a converted copy (contiguous x).
Tensor to_dtype(const Tensor& x, DType t);
// The residual add of a decoder layer, stream + branch -> new tensor in the stream's dtype: the
// branch output (the activations' dtype) is widened first when the stream is wider (an f32
// residual stream with bf16 activations, precision.residual: f32), so the sum is rounded once,
// to the stream's dtype. Same shape, contiguous.
Tensor residual_add(const Tensor& stream, const Tensor& branch);
// A contiguous copy of columns [start, start + len) of matrix m.
Tensor column_block(const Tensor& m, int64_t start, int64_t len);
// dst = src for two matrices of equal [rows, cols] (either may be a column block).
void copy_matrix(Tensor& dst, const Tensor& src);

}  // namespace graft::layers
