// Softmax cross-entropy from logits, with ignore_index and mean/sum reduction, chunkable by rows.
//
// For row r with target t_r (t_r == ignore_index rows are skipped):
//   lse_r  = log sum_v exp(logits[r, v]);   loss_r = lse_r - logits[r, t_r]
//   forward:  *loss (=, or += when accumulate) sum_r loss_r / d
//   backward: dlogits[r, v] = grad_scale / d * (exp(logits[r, v] - lse_r) - [v == t_r]);
//             ignored rows get 0
// where d = 1 for kSum and d = num_valid for kMean. num_valid is the number of non-ignored
// targets over the WHOLE batch, so a batch processed in row chunks (one call per chunk, forward
// with accumulate = true after the first) gives the same loss and gradients as one call;
// num_valid < 0 means "count the non-ignored targets of this call". With d == 0 (every target
// ignored) the loss and the gradients are 0, not NaN. `num_valid_at` (optional, one i64 on the
// logits' device) holds num_valid instead, read when the kernel runs: a replayed CUDA graph takes
// each step's target count from there (the same d, bit for bit, as num_valid would give).
// Accumulate rule: lse, row_loss, dlogits are written (=); *loss is written or accumulated.
// dlogits may alias logits (in place). A target outside [0, vocab) that is not ignore_index is
// an InputError naming the row and the value. The CPU path requires f32 logits and sums the
// (f32) exponentials in f64.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

enum class Reduction { kMean, kSum };

struct XentFwdParams {
  const void* logits = nullptr;      // [n, vocab], row stride ld (0 = vocab)
  const int64_t* targets = nullptr;  // [n]
  float* loss = nullptr;             // [1], on the logits' device
  float* lse = nullptr;              // [n], optional (the backward needs it)
  float* row_loss = nullptr;         // [n], optional: loss_r (0 for ignored rows), unreduced
  int64_t n = 0, vocab = 0, ld = 0;
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  int64_t num_valid = -1;                 // divisor for kMean; < 0 = count in this call
  const int64_t* num_valid_at = nullptr;  // optional [1]: num_valid read from device memory
  bool accumulate = false;                // *loss += instead of =
  DType dtype = DType::kF32;              // logits
  Device device;
  void* stream = nullptr;
};

struct XentBwdParams {
  const void* logits = nullptr;      // [n, vocab], row stride ld (0 = vocab)
  const int64_t* targets = nullptr;  // [n]
  const float* lse = nullptr;        // [n], from forward
  void* dlogits = nullptr;           // [n, vocab], row stride ld (=); may alias logits
  int64_t n = 0, vocab = 0, ld = 0;
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  int64_t num_valid = -1;
  const int64_t* num_valid_at = nullptr;  // optional [1]: num_valid read from device memory
  float grad_scale = 1.0f;                // d(total loss)/d(loss), e.g. 1 / grad_accum_steps
  DType dtype = DType::kF32;              // logits, dlogits
  Device device;
  void* stream = nullptr;
};

// Forward and backward in one call, as a training step wants them: loss, lse and row_loss exactly
// as cross_entropy_fwd(fwd) writes them, and dlogits exactly as cross_entropy_bwd then writes from
// that lse with the same targets, divisor and `grad_scale` (bit for bit; the CPU path is the two
// calls). On CUDA the forward's row kernel then the backward's (a single pass that kept the rows
// in L2 measured slower, kernels/cuda/cross_entropy.cu), with the divisor counted once.
struct XentFwdBwdParams {
  XentFwdParams fwd;        // fwd.lse may be null (a temporary then)
  void* dlogits = nullptr;  // [n, vocab], row stride fwd.ld (=); may alias fwd.logits
  float grad_scale = 1.0f;  // as XentBwdParams::grad_scale
  Device device;            // = fwd.device (checked)
  void* stream = nullptr;   // null or fwd.stream (checked): the kernels run on fwd.stream
};

// The backward's parameters of a fused call, reading `lse` (the forward's).
inline XentBwdParams xent_bwd_params(const XentFwdBwdParams& p, const float* lse) {
  const XentFwdParams& f = p.fwd;
  XentBwdParams b;
  b.logits = f.logits, b.targets = f.targets, b.lse = lse, b.dlogits = p.dlogits;
  b.n = f.n, b.vocab = f.vocab, b.ld = f.ld, b.ignore_index = f.ignore_index;
  b.reduction = f.reduction, b.num_valid = f.num_valid, b.num_valid_at = f.num_valid_at;
  b.grad_scale = p.grad_scale, b.dtype = f.dtype, b.device = f.device, b.stream = f.stream;
  return b;
}

// Causal-LM target shift (HF semantics) on the labels' device, so labels never travel to the host:
//   targets[b, s] = labels[b, s + 1] for s + 1 < seq;  targets[b, seq - 1] = ignore_index
// (labels equal to ignore_index stay ignored). Written (=); targets must not alias labels.
struct ShiftLabelsParams {
  const int64_t* labels = nullptr;  // [batch, seq]
  int64_t* targets = nullptr;       // [batch, seq]
  int64_t batch = 0, seq = 0;
  int64_t ignore_index = -100;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void cross_entropy_fwd(const XentFwdParams& p);
void cross_entropy_bwd(const XentBwdParams& p);
void cross_entropy_fwd_bwd(const XentFwdBwdParams& p);
void shift_labels(const ShiftLabelsParams& p);
}  // namespace cpu

inline void cross_entropy_fwd(const XentFwdParams& p) { GRAFT_DISPATCH(cross_entropy_fwd, p); }
inline void cross_entropy_bwd(const XentBwdParams& p) { GRAFT_DISPATCH(cross_entropy_bwd, p); }
inline void cross_entropy_fwd_bwd(const XentFwdBwdParams& p) {
  GRAFT_DISPATCH(cross_entropy_fwd_bwd, p);
}
inline void shift_labels(const ShiftLabelsParams& p) { GRAFT_DISPATCH(shift_labels, p); }

}  // namespace graft
