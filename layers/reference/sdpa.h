// Scaled dot-product attention on [B, S, H, D] views, shared by the reference attention and the
// TE-style DotProductAttention: a thin layer over kernels/attention.h that takes tensors (any
// b/s/h strides with contiguous channels, so sbhd inputs are transposed views and k/v may be
// views into a KV cache) and keeps what the backward needs.
#pragma once

#include <cstdint>

#include "framework/core/tensor.h"
#include "kernels/attention.h"

namespace graft::layers {

struct SdpaOptions {
  AttnMask mask = AttnMask::kCausal;
  Tensor key_padding;     // kPadding / kPaddingCausal: [B, Skv], non-zero = keep
  Tensor arbitrary_mask;  // kArbitrary: [1 or B, Sq, Skv] u8/bool, non-zero = masked
  Tensor segment_ids;     // optional [B, Skv] i64 document ids: other documents' keys masked
  Tensor q_segment_ids;   // optional [B, Sq] the queries' ids (else read from segment_ids)
  int64_t window = 0;     // > 0: key j visible from absolute position a when a - W < j <= a
  double scale = 0.0;     // <= 0: 1/sqrt(D)
  int64_t q_offset = 0;   // absolute position of query row 0 (decoding with a cache)
  AttnBackend backend = AttnBackend::kAuto;  // the model's model.attention
  AttnReport* report = nullptr;              // optional: counts what forward/backward ran
};

struct SdpaSaved {
  Tensor q, k, v, out, lse;
  SdpaOptions opt;
};

// out [B, Sq, Hq, D] (written; any view) = attention(q, k, v). Saves views when save != null.
void sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& opt,
                  Tensor& out, SdpaSaved* save);
// Writes dq, dk, dv (views shaped like q, k, v) from dout.
void sdpa_backward(const Tensor& dout, const SdpaSaved& s, Tensor& dq, Tensor& dk, Tensor& dv);

}  // namespace graft::layers
