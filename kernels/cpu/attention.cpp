// CPU scaled-dot-product attention, forward and backward (math: kernels/attention.h).
//
// Per (batch, query block, head) the scores of a block of query rows against the keys it can see
// are one OpenBLAS sgemm (the bshd row stride is the GEMM leading dimension, so views into a fused
// qkv buffer need no copy); masking and the softmax run row by row in f64; the products with V (and
// in the backward with K, Q and dout) are sgemms again. Memory: two [block, Skv] f32 buffers.
#include "kernels/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft {

const char* attn_mask_name(AttnMask m) {
  switch (m) {
    case AttnMask::kNoMask:
      return "no_mask";
    case AttnMask::kCausal:
      return "causal";
    case AttnMask::kPadding:
      return "padding";
    case AttnMask::kPaddingCausal:
      return "padding_causal";
    case AttnMask::kArbitrary:
      return "arbitrary";
  }
  return "?";
}

namespace cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kBlockElems = int64_t{1} << 20;  // scores per block buffer (4 MiB)
constexpr int64_t kBlockRows = 64;  // query rows per block (smaller blocks skip more keys)

struct Strides {
  int64_t b, s, h;
};

Strides resolve(const BshdStrides& st, int64_t seq, int64_t heads, int64_t d) {
  return {st.b ? st.b : seq * heads * d, st.s ? st.s : heads * d, st.h ? st.h : d};
}

int64_t read_int(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kI32:
      return static_cast<const int32_t*>(p)[i];
    case DType::kI64:
      return static_cast<const int64_t*>(p)[i];
    default:  // u8, bool
      return static_cast<const uint8_t*>(p)[i];
  }
}

void check_shape(const AttnShape& a, DType dtype, const Device& dev, const char* name) {
  detail::check_cpu(dev, name);
  detail::check_f32(dtype, name, "q/k/v/out");
  GRAFT_CHECK(a.batch >= 0 && a.seq_q >= 0 && a.seq_kv > 0 && a.heads_q > 0 && a.heads_kv > 0 &&
                  a.head_dim > 0,
              name, ": bad shape B = ", a.batch, ", Sq = ", a.seq_q, ", Skv = ", a.seq_kv,
              ", Hq = ", a.heads_q, ", Hkv = ", a.heads_kv, ", D = ", a.head_dim);
  GRAFT_CHECK(a.heads_q % a.heads_kv == 0, name, ": heads_q = ", a.heads_q,
              " is not a multiple of heads_kv = ", a.heads_kv);
  GRAFT_CHECK(a.window >= 0 && a.q_offset >= 0, name, ": window = ", a.window,
              ", q_offset = ", a.q_offset, " must be >= 0");
  const bool padding = a.mask == AttnMask::kPadding || a.mask == AttnMask::kPaddingCausal;
  if (padding) {
    GRAFT_CHECK(a.key_padding, name, ": mask ", attn_mask_name(a.mask), " needs key_padding");
    const DType t = a.key_padding_dtype;
    GRAFT_CHECK(t == DType::kU8 || t == DType::kBool || t == DType::kI32 || t == DType::kI64, name,
                ": key_padding dtype ", dtype_name(t), " must be u8, bool, i32 or i64");
  }
  if (a.segment_ids) {
    GRAFT_CHECK(a.segment_ids_dtype == DType::kI32 || a.segment_ids_dtype == DType::kI64, name,
                ": segment_ids dtype ", dtype_name(a.segment_ids_dtype), " must be i32 or i64");
    GRAFT_CHECK(a.q_segment_ids || a.seq_kv >= a.q_offset + a.seq_q, name,
                ": segment_ids without q_segment_ids need seq_kv = ", a.seq_kv,
                " >= q_offset + seq_q = ", a.q_offset + a.seq_q);
  }
  if (a.mask == AttnMask::kArbitrary) {
    GRAFT_CHECK(a.arbitrary_mask, name, ": mask arbitrary needs arbitrary_mask");
    GRAFT_CHECK(a.arbitrary_mask_dtype == DType::kU8 || a.arbitrary_mask_dtype == DType::kBool,
                name, ": arbitrary_mask dtype ", dtype_name(a.arbitrary_mask_dtype),
                " must be u8 or bool");
    GRAFT_CHECK(a.mask_batch == 1 || a.mask_batch == a.batch, name, ": mask_batch = ", a.mask_batch,
                " must be 1 or batch = ", a.batch);
  }
}

float scale_of(const AttnShape& a) {
  return a.scale > 0 ? a.scale
                     : static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
}

// keep[r * Skv + j] = 1 when query row i0 + r of batch b may see key j.
void build_keep(const AttnShape& a, int64_t b, int64_t i0, int64_t nb, std::vector<uint8_t>& keep) {
  const int64_t skv = a.seq_kv;
  const bool causal = a.mask == AttnMask::kCausal || a.mask == AttnMask::kPaddingCausal;
  const bool padding = a.mask == AttnMask::kPadding || a.mask == AttnMask::kPaddingCausal;
  for (int64_t r = 0; r < nb; ++r) {
    const int64_t i = i0 + r, pos = a.q_offset + i;
    const int64_t qseg = !a.segment_ids ? 0
                         : a.q_segment_ids
                             ? read_int(a.q_segment_ids, a.segment_ids_dtype, b * a.seq_q + i)
                             : read_int(a.segment_ids, a.segment_ids_dtype, b * skv + pos);
    uint8_t* k = keep.data() + r * skv;
    for (int64_t j = 0; j < skv; ++j) {
      bool ok = true;
      if (causal && j > pos) ok = false;
      if (a.window > 0 && j <= pos - a.window) ok = false;
      if (padding && read_int(a.key_padding, a.key_padding_dtype, b * skv + j) == 0) ok = false;
      if (a.segment_ids && read_int(a.segment_ids, a.segment_ids_dtype, b * skv + j) != qseg)
        ok = false;
      if (a.mask == AttnMask::kArbitrary) {
        const int64_t mb = a.mask_batch == 1 ? 0 : b;
        if (static_cast<const uint8_t*>(a.arbitrary_mask)[(mb * a.seq_q + i) * skv + j]) ok = false;
      }
      k[j] = ok;
    }
  }
}

// Keys [lo, hi) that some row of the query block [i0, i0 + nb) may see: every key outside is
// masked for the whole block (causal: j > q_offset + i0 + nb - 1; window: j <= q_offset + i0 -
// W), so the GEMMs skip it. Causal attention thus does about half the work of a full pass.
std::pair<int64_t, int64_t> key_range(const AttnShape& a, int64_t i0, int64_t nb) {
  const bool causal = a.mask == AttnMask::kCausal || a.mask == AttnMask::kPaddingCausal;
  int64_t lo = 0, hi = a.seq_kv;
  if (causal) hi = std::min(hi, a.q_offset + i0 + nb);
  if (a.window > 0) lo = std::max<int64_t>(0, a.q_offset + i0 - a.window + 1);
  return {lo, std::max(lo, hi)};
}

int64_t block_rows(const AttnShape& a) {
  return std::clamp<int64_t>(std::min(kBlockRows, kBlockElems / a.seq_kv), 1, a.seq_q);
}

// c [m, n] (ldc) = alpha * op(a) op(b) + beta * c, row-major.
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace

void attn_fwd(const AttnFwdParams& p) {
  const AttnShape& a = p.shape;
  GRAFT_INPUT_CHECK(p.backend != AttnBackend::kCudnn,
                    "attention = cudnn: cuDNN attention needs a CUDA device, this runs on the CPU");
  check_shape(a, p.dtype, p.device, "attn_fwd");
  if (p.ran) *p.ran = AttnBackend::kCpu;
  if (a.batch == 0 || a.seq_q == 0) return;
  GRAFT_CHECK(p.q && p.k && p.v && p.out, "attn_fwd: null q, k, v or out");
  const int64_t d = a.head_dim, skv = a.seq_kv, group = a.heads_q / a.heads_kv;
  const Strides qs = resolve(p.q_strides, a.seq_q, a.heads_q, d);
  const Strides ks = resolve(p.k_strides, skv, a.heads_kv, d);
  const Strides vs = resolve(p.v_strides, skv, a.heads_kv, d);
  const Strides os = resolve(p.out_strides, a.seq_q, a.heads_q, d);
  const float scale = scale_of(a);
  const int64_t block = block_rows(a);
  std::vector<float> s(static_cast<size_t>(block * skv));
  std::vector<uint8_t> keep(s.size());
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);
  constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t i0 = 0; i0 < a.seq_q; i0 += block) {
      const int64_t nb = std::min(block, a.seq_q - i0);
      const auto [lo, hi] = key_range(a, i0, nb);
      const int64_t nk = hi - lo;  // scores of the block are [nb, nk], row stride nk
      build_keep(a, b, i0, nb, keep);
      for (int64_t h = 0; h < a.heads_q; ++h) {
        const int64_t hk = h / group;
        float* oh = out + b * os.b + i0 * os.s + h * os.h;
        float* lse = p.lse ? p.lse + (b * a.heads_q + h) * a.seq_q + i0 : nullptr;
        if (nk == 0) {  // every row of the block is fully masked
          for (int64_t r = 0; r < nb; ++r) std::fill_n(oh + r * os.s, d, 0.0f);
          if (lse) std::fill_n(lse, nb, kNegInf);
          continue;
        }
        sgemm(false, true, nb, nk, d, scale, q + b * qs.b + i0 * qs.s + h * qs.h, qs.s,
              k + b * ks.b + lo * ks.s + hk * ks.h, ks.s, 0.0f, s.data(), nk);
        for (int64_t r = 0; r < nb; ++r) {
          float* sr = s.data() + r * nk;
          const uint8_t* kr = keep.data() + r * skv + lo;
          double mx = kNegInfD;
          for (int64_t j = 0; j < nk; ++j)
            if (kr[j]) mx = std::max(mx, static_cast<double>(sr[j]));
          double row_lse = kNegInfD;
          if (mx != kNegInfD) {
            double sum = 0.0;
            for (int64_t j = 0; j < nk; ++j)
              if (kr[j]) sum += std::exp(sr[j] - mx);
            row_lse = mx + std::log(sum);
          }
          for (int64_t j = 0; j < nk; ++j)  // probabilities; a fully masked row is all zero
            sr[j] = kr[j] ? static_cast<float>(std::exp(sr[j] - row_lse)) : 0.0f;
          if (lse) lse[r] = static_cast<float>(row_lse);
        }
        sgemm(false, false, nb, d, nk, 1.0f, s.data(), nk, v + b * vs.b + lo * vs.s + hk * vs.h,
              vs.s, 0.0f, oh, os.s);
      }
    }
  }
}

void attn_bwd(const AttnBwdParams& p) {
  const AttnShape& a = p.shape;
  GRAFT_INPUT_CHECK(p.backend != AttnBackend::kCudnn,
                    "attention = cudnn: cuDNN attention needs a CUDA device, this runs on the CPU");
  check_shape(a, p.dtype, p.device, "attn_bwd");
  if (p.ran) *p.ran = AttnBackend::kCpu;
  if (a.batch == 0) return;
  GRAFT_CHECK(p.q && p.k && p.v && p.out && p.dout && p.lse && p.dq && p.dk && p.dv,
              "attn_bwd: null input or output pointer");
  const int64_t d = a.head_dim, skv = a.seq_kv, group = a.heads_q / a.heads_kv;
  const Strides qs = resolve(p.q_strides, a.seq_q, a.heads_q, d);
  const Strides ks = resolve(p.k_strides, skv, a.heads_kv, d);
  const Strides vs = resolve(p.v_strides, skv, a.heads_kv, d);
  const Strides os = resolve(p.out_strides, a.seq_q, a.heads_q, d);
  const Strides dos = resolve(p.dout_strides, a.seq_q, a.heads_q, d);
  const Strides dqs = resolve(p.dq_strides, a.seq_q, a.heads_q, d);
  const Strides dks = resolve(p.dk_strides, skv, a.heads_kv, d);
  const Strides dvs = resolve(p.dv_strides, skv, a.heads_kv, d);
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  const auto* out = static_cast<const float*>(p.out);
  const auto* dout = static_cast<const float*>(p.dout);
  auto* dq = static_cast<float*>(p.dq);
  auto* dk = static_cast<float*>(p.dk);
  auto* dv = static_cast<float*>(p.dv);

  // dk and dv accumulate over query blocks and the heads of a group: start from zero.
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t j = 0; j < skv; ++j)
      for (int64_t h = 0; h < a.heads_kv; ++h) {
        std::fill_n(dk + b * dks.b + j * dks.s + h * dks.h, d, 0.0f);
        std::fill_n(dv + b * dvs.b + j * dvs.s + h * dvs.h, d, 0.0f);
      }
  if (a.seq_q == 0) return;

  const float scale = scale_of(a);
  const int64_t block = block_rows(a);
  std::vector<float> prob(static_cast<size_t>(block * skv)), ds(prob.size());
  std::vector<uint8_t> keep(prob.size());
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t i0 = 0; i0 < a.seq_q; i0 += block) {
      const int64_t nb = std::min(block, a.seq_q - i0);
      const auto [lo, hi] = key_range(a, i0, nb);
      const int64_t nk = hi - lo;
      build_keep(a, b, i0, nb, keep);
      for (int64_t h = 0; h < a.heads_q; ++h) {
        const int64_t hk = h / group;
        const float* qh = q + b * qs.b + i0 * qs.s + h * qs.h;
        const float* kh = k + b * ks.b + lo * ks.s + hk * ks.h;
        const float* vh = v + b * vs.b + lo * vs.s + hk * vs.h;
        const float* doh = dout + b * dos.b + i0 * dos.s + h * dos.h;
        const float* oh = out + b * os.b + i0 * os.s + h * os.h;
        float* dqh = dq + b * dqs.b + i0 * dqs.s + h * dqs.h;
        if (nk == 0) {  // fully masked block: no gradient flows
          for (int64_t r = 0; r < nb; ++r) std::fill_n(dqh + r * dqs.s, d, 0.0f);
          continue;
        }
        sgemm(false, true, nb, nk, d, scale, qh, qs.s, kh, ks.s, 0.0f, prob.data(), nk);
        sgemm(false, true, nb, nk, d, 1.0f, doh, dos.s, vh, vs.s, 0.0f, ds.data(), nk);  // dp
        for (int64_t r = 0; r < nb; ++r) {
          const float lse = p.lse[(b * a.heads_q + h) * a.seq_q + i0 + r];
          float* pr = prob.data() + r * nk;
          float* dsr = ds.data() + r * nk;
          const uint8_t* kr = keep.data() + r * skv + lo;
          double delta = 0.0;
          for (int64_t c = 0; c < d; ++c)
            delta += static_cast<double>(doh[r * dos.s + c]) * oh[r * os.s + c];
          for (int64_t j = 0; j < nk; ++j) {
            const bool live = kr[j] && lse != kNegInf;
            pr[j] = live ? static_cast<float>(std::exp(static_cast<double>(pr[j]) - lse)) : 0.0f;
            dsr[j] = static_cast<float>(pr[j] * (dsr[j] - delta));
          }
        }
        // dq = scale ds k;  dk += scale ds^T q;  dv += p^T dout.
        sgemm(false, false, nb, d, nk, scale, ds.data(), nk, kh, ks.s, 0.0f, dqh, dqs.s);
        sgemm(true, false, nk, d, nb, scale, ds.data(), nk, qh, qs.s, 1.0f,
              dk + b * dks.b + lo * dks.s + hk * dks.h, dks.s);
        sgemm(true, false, nk, d, nb, 1.0f, prob.data(), nk, doh, dos.s, 1.0f,
              dv + b * dvs.b + lo * dvs.s + hk * dvs.h, dvs.s);
      }
    }
  }
}

}  // namespace cpu
}  // namespace graft
