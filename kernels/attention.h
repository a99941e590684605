// Scaled dot-product attention, forward and backward, bshd layout, grouped-query.
//
// q [B, Sq, Hq, D], k and v [B, Skv, Hkv, D], out [B, Sq, Hq, D]; Hq % Hkv == 0 and query head h
// reads kv head h / (Hq / Hkv). For batch b, query head h, query row i, key j:
//   s_ij = scale * <q_i, k_j>            (scale = 1/sqrt(D) when scale <= 0)
//   s_ij = -inf where masked(b, i, j)
//   lse_i = log sum_j exp(s_ij);  p_ij = exp(s_ij - lse_i);  out_i = sum_j p_ij v_j
// Masks: the query at row i has absolute position a = q_offset + i (keys are at positions
// 0 .. Skv-1; q_offset > 0 when decoding against a KV cache, then Skv >= q_offset + Sq).
//   kNoMask:        nothing masked
//   kCausal:        j > a
//   kPadding:       key_padding[b, j] == 0
//   kPaddingCausal: either of the two above
//   kArbitrary:     mask[b or 0, i, j] != 0 (true = masked)
//   window > 0 additionally masks j <= a - window (left sliding window: a - W < j <= a).
//   segment_ids (optional, with any mask): [B, Skv] document ids; additionally masks
//     segment[b, j] != segment[b, a] (packed documents never attend to each other; the query's
//     id is read at its absolute position a, so Skv >= q_offset + Sq).
//   q_segment_ids (optional, with segment_ids): [B, Sq] the queries' own document ids, read at
//     row i instead of segment[b, a] (context parallelism: the query and key chunks are different
//     pieces of the sequence, so Skv may be < q_offset + Sq).
// A fully masked row gives out_i = 0 and lse_i = -inf (no NaN); its gradients are zero.
// Backward from the saved lse, with delta_i = <dout_i, out_i>:
//   dp_ij = <dout_i, v_j>;  ds_ij = p_ij (dp_ij - delta_i)
//   dq_i = scale sum_j ds_ij k_j;  dk_j = scale sum_{i, heads of the group} ds_ij q_i;
//   dv_j = sum_{i, heads of the group} p_ij dout_i
// Accumulate rule: out, lse, dq, dk, dv are written (=).
// Strides are in elements per tensor (0 = contiguous [B, S, H, D]); the D channels of a head are
// contiguous. Non-zero strides let q/k/v be views into a fused qkv buffer.
// The CPU path requires f32 (lse always f32): O(B Hq Sq Skv D) work in OpenBLAS sgemms over
// blocks of query rows (f32 dot products), softmax row sums in f64, [block, Skv] scratch.
//
// Backend (CUDA): `backend` asks for one (kAuto: cuDNN fused attention where it supports the
// problem, else the unfused kernels, said once on stderr; kCudnn: strict, an InputError saying
// why cuDNN cannot run it; kUnfused). The CPU path runs for a CPU device (kCudnn there is an
// InputError). The entry point writes the backend that actually ran into *ran when ran != null,
// so callers report what ran rather than guess it.
#pragma once

#include <cstdint>
#include <string>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

enum class AttnMask { kNoMask, kCausal, kPadding, kPaddingCausal, kArbitrary };
const char* attn_mask_name(AttnMask m);

// A requested backend (kAuto, kCudnn, kUnfused) or one that ran (kCudnn, kUnfused, kCpu).
enum class AttnBackend { kAuto, kCudnn, kUnfused, kCpu };
const char* attn_backend_name(AttnBackend b);  // "auto", "cudnn", "unfused", "cpu"
// "auto" | "cudnn" | "unfused"; InputError naming `where` (e.g. "recipe.yaml: model.attention")
AttnBackend parse_attn_backend(const std::string& s, const std::string& where);

// What the attention calls of a model ran, counted per direction and backend (filled from the
// kernels' *ran). summary(): "cudnn", "unfused", "cpu", "none", or e.g. "cudnn fwd, unfused bwd"
// / "mixed (fwd cudnn 30 unfused 2; bwd ...)" when calls differ.
struct AttnReport {
  int64_t fwd[4] = {0, 0, 0, 0}, bwd[4] = {0, 0, 0, 0};  // indexed by AttnBackend
  void add(bool backward, AttnBackend ran) { (backward ? bwd : fwd)[static_cast<int>(ran)]++; }
  void reset() { *this = AttnReport{}; }
  std::string summary() const;
};

// Element strides of a [B, S, H, D] tensor whose D channels are contiguous. 0 = contiguous.
struct BshdStrides {
  int64_t b = 0, s = 0, h = 0;
};

// What forward and backward share: sizes, mask, scale.
struct AttnShape {
  int64_t batch = 0, seq_q = 0, seq_kv = 0, heads_q = 0, heads_kv = 0, head_dim = 0;
  AttnMask mask = AttnMask::kCausal;
  // kPadding / kPaddingCausal: [B, Skv], non-zero = keep. dtype u8, bool, i32 or i64.
  const void* key_padding = nullptr;
  DType key_padding_dtype = DType::kU8;
  // kArbitrary: [mask_batch, Sq, Skv], non-zero = masked. dtype u8 or bool.
  const void* arbitrary_mask = nullptr;
  DType arbitrary_mask_dtype = DType::kU8;
  int64_t mask_batch = 1;  // 1 (broadcast) or B
  int64_t window = 0;      // > 0: left sliding window W
  // Optional [B, Skv] i32 or i64 document ids: keys of another document are masked.
  const void* segment_ids = nullptr;
  DType segment_ids_dtype = DType::kI64;
  // Optional [B, Sq] document ids of the queries (same dtype as segment_ids); see the top.
  const void* q_segment_ids = nullptr;
  int64_t q_offset = 0;  // absolute position of query row 0
  float scale = 0.0f;    // <= 0: 1/sqrt(head_dim)
};

struct AttnFwdParams {
  const void* q = nullptr;  // [B, Sq, Hq, D]
  const void* k = nullptr;  // [B, Skv, Hkv, D]
  const void* v = nullptr;  // [B, Skv, Hkv, D]
  void* out = nullptr;      // [B, Sq, Hq, D]
  float* lse = nullptr;     // [B, Hq, Sq], optional (needed by backward)
  BshdStrides q_strides, k_strides, v_strides, out_strides;
  AttnShape shape;
  DType dtype = DType::kF32;  // q, k, v, out
  AttnBackend backend = AttnBackend::kAuto;
  AttnBackend* ran = nullptr;  // optional: set to the backend that ran
  Device device;
  void* stream = nullptr;
};

struct AttnBwdParams {
  const void* q = nullptr;     // [B, Sq, Hq, D]
  const void* k = nullptr;     // [B, Skv, Hkv, D]
  const void* v = nullptr;     // [B, Skv, Hkv, D]
  const void* out = nullptr;   // [B, Sq, Hq, D], the forward output
  const void* dout = nullptr;  // [B, Sq, Hq, D]
  const float* lse = nullptr;  // [B, Hq, Sq], from forward
  void* dq = nullptr;          // [B, Sq, Hq, D] (=)
  void* dk = nullptr;          // [B, Skv, Hkv, D] (=)
  void* dv = nullptr;          // [B, Skv, Hkv, D] (=)
  BshdStrides q_strides, k_strides, v_strides, out_strides, dout_strides;
  BshdStrides dq_strides, dk_strides, dv_strides;
  AttnShape shape;
  DType dtype = DType::kF32;
  AttnBackend backend = AttnBackend::kAuto;
  AttnBackend* ran = nullptr;  // optional: set to the backend that ran
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void attn_fwd(const AttnFwdParams& p);
void attn_bwd(const AttnBwdParams& p);
}  // namespace cpu

inline void attn_fwd(const AttnFwdParams& p) { GRAFT_DISPATCH(attn_fwd, p); }
inline void attn_bwd(const AttnBwdParams& p) { GRAFT_DISPATCH(attn_bwd, p); }

}  // namespace graft
