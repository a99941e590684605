// Ring attention: causal self-attention over a sequence split across the context-parallel group.
//
// Layout (load-balanced for causal masks): the sequence of S tokens is cut into 2·cp chunks of
// c = S / (2·cp) tokens; cp rank r holds chunks r and 2·cp−1−r, in that order, as its L = 2c rows
// (framework/model/context_parallel.h reorders ids, positions, targets and masks the same way).
// Every rank then does the same causal work: chunk r sees r + 1 chunks, chunk 2·cp−1−r the rest.
//
// Forward, for t = 0 .. cp−1: this rank holds the K/V (and key padding / document ids) of rank
// src = r − t (mod cp) and sends them on to rank r + 1 while it computes (one batched async
// send/recv per step, overlapped with the attention of the block in hand). For each of its two
// query chunks qi and the block's two key chunks ki, the pair's attention runs through
// kernels/attention.h (the device's backend: CPU reference, cuDNN or the unfused CUDA kernels):
//   ki > qi: skipped (causal);   ki < qi: unmasked, or causal with q_offset = (qi − ki)·c where a
//   sliding window reaches into the pair;   ki = qi: causal.
// Pairs entirely outside the window are skipped. Each pair's (out, lse) is merged into f32
// accumulators by kernels/attn_merge.h: lse = log Σ exp(lse_pair), out = Σ exp(lse_pair − lse)·out.
// Backward, the same ring from the final out and lse (softmax statistics of the whole row, so
// each pair's p_ij = exp(s_ij − lse_i) is exact): K/V travel as in the forward and the f32 dK/dV
// accumulators of each block travel with them, one step behind (async, overlapped with the next
// step's kernels); after cp steps each block's dK/dV has visited every rank and is back with its
// owner. dQ stays local. Non-causal masks (no_mask / padding) see every pair, without a window.
// Under GQA, K/V keep their Hkv heads on the wire.
#pragma once

#include <cstdint>
#include <memory>

#include "framework/core/tensor.h"
#include "kernels/attention.h"
#include "parallel/process_group.h"

namespace graft::layers {

struct RingAttnOptions {
  bool causal = true;
  int64_t window = 0;  // > 0: left sliding window W over absolute positions (causal only)
  double scale = 0.0;  // <= 0: 1/sqrt(D)
  const char* layer = "attention";
  AttnBackend backend = AttnBackend::kAuto;  // each chunk pair's (the model's model.attention)
  AttnReport* report = nullptr;              // optional: counts what each pair ran
};

struct RingAttnSaved {
  ProcessGroup* group = nullptr;
  Tensor q, k, v, out;           // this rank's [B, L, H, D] (contiguous)
  Tensor lse[2];                 // [B, Hq, c] f32 of each query chunk, over the whole sequence
  Tensor key_padding, segments;  // this rank's [B, L] (or undefined)
  RingAttnOptions opt;
};

// q [B, L, Hq, D], k, v [B, L, Hkv, D] (RoPE applied), key_padding [B, L] (1 = token; undefined =
// none) and segment_ids [B, L] i64/i32 (undefined = one document) of this rank's two chunks ->
// out [B, L, Hq, D] (new, contiguous). Collective over `cp`: every rank calls it.
// InputError when L is odd.
Tensor ring_attention_forward(ProcessGroup& cp, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_padding, const Tensor& segment_ids,
                              const RingAttnOptions& opt, std::shared_ptr<RingAttnSaved>* save);
// dq, dk, dv (new, contiguous, shaped like q, k, v) from dout [B, L, Hq, D]. Collective.
void ring_attention_backward(const Tensor& dout, const RingAttnSaved& saved, Tensor& dq, Tensor& dk,
                             Tensor& dv);

}  // namespace graft::layers
