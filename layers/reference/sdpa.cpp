#include "layers/reference/sdpa.h"

namespace graft::layers {
namespace {

BshdStrides strides_of(const Tensor& t, const char* what) {
  GRAFT_CHECK(t.ndim() == 4 && t.strides()[3] == 1 &&
                  (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16),
              "sdpa: ", what, " must be f32/bf16 [B, S, H, D] with contiguous channels, got ",
              t.str());
  return {t.strides()[0], t.strides()[1], t.strides()[2]};
}

AttnShape shape_of(const Tensor& q, const Tensor& k, const SdpaOptions& opt) {
  AttnShape s;
  s.batch = q.size(0);
  s.seq_q = q.size(1);
  s.heads_q = q.size(2);
  s.head_dim = q.size(3);
  s.seq_kv = k.size(1);
  s.heads_kv = k.size(2);
  GRAFT_CHECK(k.size(0) == s.batch && k.size(3) == s.head_dim, "sdpa: q ", q.str(), " k ", k.str());
  GRAFT_INPUT_CHECK(s.heads_kv > 0 && s.heads_q % s.heads_kv == 0, "attention: ", s.heads_q,
                    " query heads are not a multiple of ", s.heads_kv, " key/value heads");
  s.mask = opt.mask;
  if (opt.mask == AttnMask::kPadding || opt.mask == AttnMask::kPaddingCausal) {
    const Tensor& kp = opt.key_padding;
    GRAFT_INPUT_CHECK(kp.defined() && kp.ndim() == 2 && kp.size(0) == s.batch &&
                          kp.size(1) == s.seq_kv && kp.is_contiguous(),
                      "attention: key padding mask must be [", s.batch, ", ", s.seq_kv,
                      "] (1 = token, 0 = padding), got ", kp.defined() ? kp.str() : "none");
    s.key_padding = kp.raw();
    s.key_padding_dtype = kp.dtype();
  }
  if (opt.mask == AttnMask::kArbitrary) {
    const Tensor& am = opt.arbitrary_mask;
    GRAFT_INPUT_CHECK(am.defined() && am.ndim() == 3 &&
                          (am.size(0) == 1 || am.size(0) == s.batch) && am.size(1) == s.seq_q &&
                          am.size(2) == s.seq_kv && am.is_contiguous() &&
                          (am.dtype() == DType::kU8 || am.dtype() == DType::kBool),
                      "attention: arbitrary mask must be u8/bool [1 or ", s.batch, ", ", s.seq_q,
                      ", ", s.seq_kv, "] (true = masked), got ", am.defined() ? am.str() : "none");
    s.arbitrary_mask = am.raw();
    s.arbitrary_mask_dtype = am.dtype();
    s.mask_batch = am.size(0);
  }
  if (opt.segment_ids.defined()) {
    const Tensor& sg = opt.segment_ids;
    GRAFT_INPUT_CHECK(
        sg.ndim() == 2 && sg.size(0) == s.batch && sg.size(1) == s.seq_kv && sg.is_contiguous() &&
            (sg.dtype() == DType::kI64 || sg.dtype() == DType::kI32),
        "attention: segment ids must be i32/i64 [", s.batch, ", ", s.seq_kv, "], got ", sg.str());
    s.segment_ids = sg.raw();
    s.segment_ids_dtype = sg.dtype();
    if (opt.q_segment_ids.defined()) {
      const Tensor& qs = opt.q_segment_ids;
      GRAFT_INPUT_CHECK(qs.ndim() == 2 && qs.size(0) == s.batch && qs.size(1) == s.seq_q &&
                            qs.is_contiguous() && qs.dtype() == sg.dtype(),
                        "attention: query segment ids must be ", dtype_name(sg.dtype()), " [",
                        s.batch, ", ", s.seq_q, "], got ", qs.str());
      s.q_segment_ids = qs.raw();
    }
  }
  s.window = opt.window;
  s.q_offset = opt.q_offset;
  s.scale = static_cast<float>(opt.scale);
  return s;
}

}  // namespace

void sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& opt,
                  Tensor& out, SdpaSaved* save) {
  AttnFwdParams p;
  p.shape = shape_of(q, k, opt);
  GRAFT_CHECK(v.shape() == k.shape() && out.shape() == q.shape(), "sdpa: v ", v.str(), " out ",
              out.str());
  p.q = q.raw();
  p.k = k.raw();
  p.v = v.raw();
  p.out = out.raw();
  p.q_strides = strides_of(q, "q");
  p.k_strides = strides_of(k, "k");
  p.v_strides = strides_of(v, "v");
  p.out_strides = strides_of(out, "out");
  GRAFT_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype() && out.dtype() == q.dtype(),
              "sdpa: q ", q.str(), " k ", k.str(), " v ", v.str(), " out ", out.str());
  p.dtype = q.dtype();
  p.device = q.device();
  Tensor lse;
  if (save) {
    lse = Tensor::empty({p.shape.batch, p.shape.heads_q, p.shape.seq_q}, DType::kF32, q.device());
    p.lse = static_cast<float*>(lse.raw());
  }
  p.backend = opt.backend;
  AttnBackend ran = AttnBackend::kAuto;
  p.ran = &ran;
  if (q.numel() > 0) attn_fwd(p);
  if (opt.report && ran != AttnBackend::kAuto) opt.report->add(false, ran);
  if (save) *save = SdpaSaved{q, k, v, out, lse, opt};
}

void sdpa_backward(const Tensor& dout, const SdpaSaved& s, Tensor& dq, Tensor& dk, Tensor& dv) {
  GRAFT_CHECK(s.lse.defined(), "sdpa_backward without a saved forward");
  AttnBwdParams p;
  p.shape = shape_of(s.q, s.k, s.opt);
  GRAFT_CHECK(dout.shape() == s.q.shape() && dq.shape() == s.q.shape() &&
                  dk.shape() == s.k.shape() && dv.shape() == s.v.shape(),
              "sdpa_backward: shapes");
  p.q = s.q.raw();
  p.k = s.k.raw();
  p.v = s.v.raw();
  p.out = s.out.raw();
  p.dout = dout.raw();
  p.lse = static_cast<const float*>(s.lse.raw());
  p.dq = dq.raw();
  p.dk = dk.raw();
  p.dv = dv.raw();
  p.q_strides = strides_of(s.q, "q");
  p.k_strides = strides_of(s.k, "k");
  p.v_strides = strides_of(s.v, "v");
  p.out_strides = strides_of(s.out, "out");
  p.dout_strides = strides_of(dout, "dout");
  p.dq_strides = strides_of(dq, "dq");
  p.dk_strides = strides_of(dk, "dk");
  p.dv_strides = strides_of(dv, "dv");
  GRAFT_CHECK(dout.dtype() == s.q.dtype() && dq.dtype() == s.q.dtype() &&
                  dk.dtype() == s.q.dtype() && dv.dtype() == s.q.dtype(),
              "sdpa_backward: dtypes of dout ", dout.str(), " and q ", s.q.str());
  p.dtype = s.q.dtype();
  p.device = dout.device();
  p.backend = s.opt.backend;
  AttnBackend ran = AttnBackend::kAuto;
  p.ran = &ran;
  if (s.q.numel() > 0) attn_bwd(p);
  if (s.opt.report && ran != AttnBackend::kAuto) s.opt.report->add(true, ran);
}

}  // namespace graft::layers
