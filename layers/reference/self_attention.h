// The part of self-attention that the reference Attention and the TE-style MultiheadAttention
// share after their projections: KV-cache append/read, the mask built from AttentionInputs, and
// the attention itself (sdpa.h). RoPE and q/k norms stay with the callers (their order differs).
#pragma once

#include <cstdint>

#include "layers/decoder.h"
#include "layers/reference/sdpa.h"

namespace graft::layers {

struct SelfAttnOptions {
  // kCausal / kNoMask: a key padding mask in AttentionInputs is an InputError.
  // kPaddingCausal / kPadding: the key padding mask is used when given.
  AttnMask mask = AttnMask::kPaddingCausal;
  int64_t window = 0;               // > 0: left sliding window (a - W < j <= a)
  double scale = 0.0;               // <= 0: 1/sqrt(D)
  int64_t cache_index = 0;          // which KVCache entry this layer owns
  const char* layer = "attention";  // for messages
};

// q [B, S, Hq, D], k and v [B, S, Hkv, D] (RoPE already applied) -> out [B, S, Hq, D]
// (contiguous, new). With in.cache set, k and v are appended to the cache first and the
// attention reads the cache prefix; `save` must then be null.
Tensor self_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionInputs& in, const SelfAttnOptions& opt,
                              SdpaSaved* save);
// dq, dk, dv (contiguous, new) from dout [B, S, Hq, D].
void self_attention_backward(const Tensor& dout, const SdpaSaved& saved, Tensor& dq, Tensor& dk,
                             Tensor& dv);

}  // namespace graft::layers
