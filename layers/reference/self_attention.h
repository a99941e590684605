// The part of self-attention that the reference Attention and the TE-style MultiheadAttention
// share after their projections: KV-cache append/read, the mask built from AttentionInputs, and
// the attention itself (sdpa.h). RoPE and q/k norms stay with the callers (their order differs).
// This is the one place the attention computation happens: under context parallelism
// (AttentionInputs.context_parallel with a cp group of more than one rank) it is the ring
// attention of layers/context_parallel/ring_attention.h instead of one local call.
#pragma once

#include <cstdint>
#include <memory>

#include "layers/context_parallel/ring_attention.h"
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
  // The layer's context-parallel group (BuildContext::groups->cp); used when in.context_parallel.
  ProcessGroup* cp = nullptr;
};

// What the backward needs: the local attention's, or the ring's.
struct SelfAttnSaved {
  SdpaSaved sdpa;
  std::shared_ptr<RingAttnSaved> ring;
};

// q [B, S, Hq, D], k and v [B, S, Hkv, D] (RoPE already applied) -> out [B, S, Hq, D]
// (contiguous, new). With in.cache set, k and v are appended to the cache first and the
// attention reads the cache prefix; `save` must then be null.
Tensor self_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionInputs& in, const SelfAttnOptions& opt,
                              SelfAttnSaved* save);
// dq, dk, dv (contiguous, new) from dout [B, S, Hq, D].
void self_attention_backward(const Tensor& dout, const SelfAttnSaved& saved, Tensor& dq, Tensor& dk,
                             Tensor& dv);

}  // namespace graft::layers
