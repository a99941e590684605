#include "layers/reference/self_attention.h"

#include "kernels/elementwise.h"

namespace graft::layers {
namespace {

// dst[b, offset:offset+S] = src[b] for a [B, max_len, H, D] cache and a [B, S, H, D] source.
void cache_append(Tensor& cache, const Tensor& src, int64_t offset) {
  const int64_t row = src.size(2) * src.size(3);
  Copy2dParams p;
  p.src = src.raw();
  p.dst = static_cast<char*>(cache.raw()) + offset * row * dtype_size(cache.dtype());
  p.rows = src.size(0);
  p.cols = src.size(1) * row;
  p.ld_src = p.cols;
  p.ld_dst = cache.size(1) * row;
  p.dtype = src.dtype();
  p.device = src.device();
  if (p.rows > 0 && p.cols > 0) copy_2d(p);
}

}  // namespace

Tensor self_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionInputs& in, const SelfAttnOptions& opt,
                              SelfAttnSaved* save) {
  const int64_t B = q.size(0), S = q.size(1);
  SdpaOptions so;
  so.window = opt.window;
  so.scale = opt.scale;
  so.backend = in.attention;
  so.report = in.attention_report;
  const bool padding = opt.mask == AttnMask::kPadding || opt.mask == AttnMask::kPaddingCausal;
  const bool causal = opt.mask == AttnMask::kCausal || opt.mask == AttnMask::kPaddingCausal;
  GRAFT_INPUT_CHECK(padding || !in.key_padding_mask.defined(), opt.layer,
                    ": attn_mask_type = ", attn_mask_name(opt.mask),
                    " but a key padding mask was given");
  if (padding && in.key_padding_mask.defined()) {
    so.mask = opt.mask;
    so.key_padding = in.key_padding_mask.is_contiguous() ? in.key_padding_mask
                                                         : in.key_padding_mask.contiguous();
  } else {
    so.mask = causal ? AttnMask::kCausal : AttnMask::kNoMask;
  }
  if (in.segment_ids.defined()) {
    GRAFT_INPUT_CHECK(!in.cache, opt.layer, ": document masking (segment ids) with a KV cache");
    so.segment_ids = in.segment_ids.is_contiguous() ? in.segment_ids : in.segment_ids.contiguous();
  }
  if (in.context_parallel) {
    GRAFT_CHECK(opt.cp != nullptr, opt.layer,
                ": inputs split for context parallelism but the layer has no cp group");
    GRAFT_INPUT_CHECK(!in.cache, opt.layer, ": a KV cache under context parallelism");
    if (opt.cp->size() > 1) {
      RingAttnOptions ro;
      ro.causal = causal;
      ro.window = opt.window;
      ro.scale = opt.scale;
      ro.layer = opt.layer;
      ro.backend = so.backend;
      ro.report = so.report;
      return ring_attention_forward(*opt.cp, q, k, v, so.key_padding, so.segment_ids, ro,
                                    save ? &save->ring : nullptr);
    }
  }
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  if (!in.cache) {
    sdpa_forward(q, k, v, so, out, save ? &save->sdpa : nullptr);
    return out;
  }
  GRAFT_CHECK(save == nullptr, opt.layer, ": backward through a KV cache is not supported");
  KVCache& c = *in.cache;
  GRAFT_CHECK(opt.cache_index >= 0 && opt.cache_index < static_cast<int64_t>(c.k.size()) &&
                  opt.cache_index < static_cast<int64_t>(c.v.size()),
              opt.layer, ": KV cache has ", c.k.size(), " layers, layer index ", opt.cache_index);
  Tensor& ck = c.k[opt.cache_index];
  Tensor& cv = c.v[opt.cache_index];
  GRAFT_CHECK(ck.ndim() == 4 && ck.size(0) == B && ck.size(2) == k.size(2) &&
                  ck.size(3) == k.size(3) && ck.is_contiguous() && cv.shape() == ck.shape() &&
                  cv.is_contiguous() && ck.dtype() == k.dtype() && cv.dtype() == v.dtype(),
              opt.layer, ": KV cache tensor ", ck.str(), " does not fit keys ", k.str());
  GRAFT_INPUT_CHECK(in.cache_offset >= 0 && in.cache_offset + S <= ck.size(1), opt.layer,
                    ": KV cache holds ", ck.size(1), " positions, call needs ",
                    in.cache_offset + S);
  Tensor kc = k.is_contiguous() ? k : k.contiguous();
  Tensor vc = v.is_contiguous() ? v : v.contiguous();
  cache_append(ck, kc, in.cache_offset);
  cache_append(cv, vc, in.cache_offset);
  so.q_offset = in.cache_offset;
  Tensor keys = ck.slice(1, 0, in.cache_offset + S);
  Tensor values = cv.slice(1, 0, in.cache_offset + S);
  sdpa_forward(q, keys, values, so, out, nullptr);
  return out;
}

void self_attention_backward(const Tensor& dout, const SelfAttnSaved& s, Tensor& dq, Tensor& dk,
                             Tensor& dv) {
  if (s.ring) {
    ring_attention_backward(dout, *s.ring, dq, dk, dv);
    return;
  }
  const SdpaSaved& saved = s.sdpa;
  dq = Tensor::empty(saved.q.shape(), saved.q.dtype(), dout.device());
  dk = Tensor::empty(saved.k.shape(), saved.k.dtype(), dout.device());
  dv = Tensor::empty(saved.v.shape(), saved.v.dtype(), dout.device());
  Tensor d = dout.is_contiguous() ? dout : dout.contiguous();
  sdpa_backward(d, saved, dq, dk, dv);
}

}  // namespace graft::layers
