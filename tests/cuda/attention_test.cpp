// CUDA attention (unfused: cuBLASLt GEMMs + masked softmax) forward and backward against the
// CPU reference: every mask type, GQA, sliding window, padding, q_offset (decode), fully masked
// rows, and q/k/v as strided views into one fused qkv buffer.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct AttnCase {
  const char* name;
  int64_t batch, seq_q, seq_kv, heads_q, heads_kv, head_dim;
  AttnMask mask;
  int64_t window, q_offset;
  bool fused;  // q, k, v inside one [B, S, Hq + 2 Hkv, D] buffer (needs seq_q == seq_kv)
  DType dt;
  bool cudnn;  // cuDNN fused attention must accept this case (it runs under both backends)
  bool documents = false;  // segment ids: documents of 9 tokens, starting 3 b earlier in entry b
  // The queries' document ids passed apart (q_segment_ids, a ring-attention chunk pair): the
  // ids of their absolute positions q_offset + i, which may lie beyond the keys.
  bool q_documents = false;
};

class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const AttnCase c = GetParam();
  auto rng = rng_for(c.name);
  const int64_t B = c.batch, Sq = c.seq_q, Skv = c.seq_kv, Hq = c.heads_q, Hkv = c.heads_kv;
  const int64_t D = c.head_dim, Ht = Hq + 2 * Hkv;
  AttnShape sh;
  sh.batch = B, sh.seq_q = Sq, sh.seq_kv = Skv, sh.heads_q = Hq, sh.heads_kv = Hkv;
  sh.head_dim = D, sh.mask = c.mask, sh.window = c.window, sh.q_offset = c.q_offset;
  // Padding: batch entry b keeps keys j >= 5 b (entry 1 then has fully masked causal rows).
  std::vector<int64_t> keep(static_cast<size_t>(B * Skv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < Skv; ++j) keep[b * Skv + j] = j >= 5 * b ? 1 : 0;
  Tensor pad = Tensor::from_vector(keep, {B, Skv});
  Tensor arb = Tensor::empty({B, Sq, Skv}, DType::kU8);
  std::bernoulli_distribution coin(0.3);
  for (int64_t i = 0; i < arb.numel(); ++i) arb.data<uint8_t>()[i] = coin(rng) ? 1 : 0;
  for (int64_t j = 0; j < Skv; ++j) arb.data<uint8_t>()[j] = 1;  // one fully masked row
  sh.key_padding_dtype = DType::kI64, sh.arbitrary_mask_dtype = DType::kU8, sh.mask_batch = B;
  std::vector<int64_t> doc_ids(static_cast<size_t>(B * Skv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < Skv; ++j) doc_ids[b * Skv + j] = (j + 3 * b) / 9;
  Tensor seg = Tensor::from_vector(doc_ids, {B, Skv});
  sh.segment_ids_dtype = DType::kI64;
  std::vector<int64_t> q_doc_ids(static_cast<size_t>(B * Sq));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Sq; ++i) q_doc_ids[b * Sq + i] = (c.q_offset + i + 3 * b) / 9;
  Tensor q_seg = Tensor::from_vector(q_doc_ids, {B, Sq});

  Tensor q, k, v;  // host f32 (rounded through dt)
  BshdStrides qs, ks, vs;
  Tensor fused;
  int64_t k_off = 0, v_off = 0;
  if (c.fused) {
    fused = random_host({B, Sq, Ht, D}, rng, c.dt);
    qs = ks = vs = BshdStrides{Sq * Ht * D, Ht * D, D};
    k_off = Hq * D, v_off = (Hq + Hkv) * D;
  } else {
    q = random_host({B, Sq, Hq, D}, rng, c.dt);
    k = random_host({B, Skv, Hkv, D}, rng, c.dt);
    v = random_host({B, Skv, Hkv, D}, rng, c.dt);
  }
  Tensor dout = random_host({B, Sq, Hq, D}, rng, c.dt);

  // ---- CPU reference.
  Tensor pad_h = pad, arb_h = arb;
  Tensor out_h = Tensor::empty({B, Sq, Hq, D}, DType::kF32),
         lse_h = Tensor::empty({B, Hq, Sq}, DType::kF32);
  Tensor dq_h = Tensor::empty({B, Sq, Hq, D}, DType::kF32);
  Tensor dk_h = Tensor::empty({B, Skv, Hkv, D}, DType::kF32),
         dv_h = Tensor::empty({B, Skv, Hkv, D}, DType::kF32);
  auto host_ptrs = [&](const void*& qp, const void*& kp, const void*& vp) {
    if (c.fused) {
      const float* base = fused.data<float>();
      qp = base, kp = base + k_off, vp = base + v_off;
    } else {
      qp = q.raw(), kp = k.raw(), vp = v.raw();
    }
  };
  AttnShape shc = sh;
  shc.key_padding = pad_h.raw(), shc.arbitrary_mask = arb_h.raw();
  if (c.documents) shc.segment_ids = seg.raw();
  if (c.q_documents) shc.q_segment_ids = q_seg.raw();
  AttnFwdParams fc;
  host_ptrs(fc.q, fc.k, fc.v);
  fc.out = out_h.raw(), fc.lse = lse_h.data<float>(), fc.shape = shc;
  fc.q_strides = qs, fc.k_strides = ks, fc.v_strides = vs;
  attn_fwd(fc);
  AttnBwdParams bc;
  host_ptrs(bc.q, bc.k, bc.v);
  bc.out = out_h.raw(), bc.dout = dout.raw(), bc.lse = lse_h.data<float>();
  bc.dq = dq_h.raw(), bc.dk = dk_h.raw(), bc.dv = dv_h.raw(), bc.shape = shc;
  bc.q_strides = qs, bc.k_strides = ks, bc.v_strides = vs;
  attn_bwd(bc);

  // For the bf16 backward the CPU reference must see the rounded out as well.
  Tensor out_ref = to_gpu(out_h, c.dt);
  if (c.dt != DType::kF32) {
    Tensor out_r = to_host_f32(out_ref);
    Tensor dq_r = Tensor::empty({B, Sq, Hq, D}, DType::kF32);
    Tensor dk_r = Tensor::empty({B, Skv, Hkv, D}, DType::kF32);
    Tensor dv_r = Tensor::empty({B, Skv, Hkv, D}, DType::kF32);
    bc.out = out_r.raw(), bc.dq = dq_r.raw(), bc.dk = dk_r.raw(), bc.dv = dv_r.raw();
    attn_bwd(bc);
    dq_h = dq_r, dk_h = dk_r, dv_h = dv_r;
  }

  // f32: two GEMMs (D, then Skv terms) summed in a different order than the CPU, whose dot
  // products are f32 too; rounding errors of such sums grow like a random walk, typically
  // sqrt(D + Skv) u per unit of magnitude: atol 1e-6 + 4 sqrt(D + Skv) u.
  // bf16: P and dS are rounded to bf16 before their GEMMs (the unfused path, like flash
  // attention), which perturbs each output by up to 2^-9 of the sum of |terms|:
  // atol 2^-7 max|ref|, rtol 1e-2.
  auto tol = [&](const Tensor& ref) {
    if (c.dt == DType::kF32) {
      return Tol{kF32Tol.atol + 4.0 * std::sqrt(double(D + Skv)) * kU32, kF32Tol.rtol};
    }
    double mx = 0.0;
    for (float x : ref.to_f32_vector()) mx = std::max(mx, std::fabs(static_cast<double>(x)));
    return Tol{std::ldexp(mx, -7), kBF16Tol.rtol};
  };

  std::vector<AttnBackend> backends{AttnBackend::kUnfused};
  if (c.cudnn) backends.push_back(AttnBackend::kCudnn);  // strict: a fallback would throw
  for (AttnBackend want : backends) {
    const char* backend = attn_backend_name(want);
    SCOPED_TRACE(backend);
    const size_t es = dtype_size(c.dt);
    Tensor q_d, k_d, v_d, fused_d;
    const void *qp, *kp, *vp;
    if (c.fused) {
      fused_d = to_gpu(fused, c.dt);
      const char* base = static_cast<const char*>(fused_d.raw());
      qp = base, kp = base + k_off * es, vp = base + v_off * es;
    } else {
      q_d = to_gpu(q, c.dt), k_d = to_gpu(k, c.dt), v_d = to_gpu(v, c.dt);
      qp = q_d.raw(), kp = k_d.raw(), vp = v_d.raw();
    }
    Tensor pad_d = pad.to(gpu()), arb_d = arb.to(gpu());
    AttnShape shg = sh;
    shg.key_padding = pad_d.raw(), shg.arbitrary_mask = arb_d.raw();
    Tensor seg_d = seg.to(gpu());
    if (c.documents) shg.segment_ids = seg_d.raw();
    Tensor q_seg_d = q_seg.to(gpu());
    if (c.q_documents) shg.q_segment_ids = q_seg_d.raw();
    Tensor out_d = poisoned({B, Sq, Hq, D}, c.dt), lse_d = poisoned({B, Hq, Sq}, DType::kF32);
    AttnFwdParams fg;
    fg.q = qp, fg.k = kp, fg.v = vp, fg.out = out_d.raw();
    fg.lse = static_cast<float*>(lse_d.raw());
    fg.q_strides = qs, fg.k_strides = ks, fg.v_strides = vs, fg.shape = shg;
    fg.dtype = c.dt, fg.device = gpu();
    AttnBackend ran_fwd = AttnBackend::kAuto, ran_bwd = AttnBackend::kAuto;
    fg.backend = want, fg.ran = &ran_fwd;
    attn_fwd(fg);
    EXPECT_EQ(ran_fwd, want) << "forward reported " << attn_backend_name(ran_fwd);
    // Backward from the CPU's out and lse, so that it is checked on its own.
    Tensor lse_ref = lse_h.to(gpu()), dout_d = to_gpu(dout, c.dt);
    Tensor dq_d = poisoned({B, Sq, Hq, D}, c.dt), dk_d = poisoned({B, Skv, Hkv, D}, c.dt);
    Tensor dv_d = poisoned({B, Skv, Hkv, D}, c.dt);
    AttnBwdParams bg;
    bg.q = qp, bg.k = kp, bg.v = vp, bg.out = out_ref.raw(), bg.dout = dout_d.raw();
    bg.lse = static_cast<const float*>(lse_ref.raw());
    bg.dq = dq_d.raw(), bg.dk = dk_d.raw(), bg.dv = dv_d.raw();
    bg.q_strides = qs, bg.k_strides = ks, bg.v_strides = vs, bg.shape = shg;
    bg.dtype = c.dt, bg.device = gpu();
    bg.backend = want, bg.ran = &ran_bwd;
    attn_bwd(bg);
    EXPECT_EQ(ran_bwd, want) << "backward reported " << attn_backend_name(ran_bwd);
    const std::string tag = std::string(" ") + backend;
    expect_close(out_d, out_h, tol(out_h), "out" + tag);
    expect_close(lse_d, lse_h, Tol{kF32Tol.atol + 4.0 * D * kU32, kF32Tol.rtol}, "lse" + tag);
    expect_close(dq_d, dq_h, tol(dq_h), "dq" + tag);
    expect_close(dk_d, dk_h, tol(dk_h), "dk" + tag);
    expect_close(dv_d, dv_h, tol(dv_h), "dv" + tag);
  }
}

constexpr DType F = DType::kF32, B = DType::kBF16;
using M = AttnMask;
INSTANTIATE_TEST_SUITE_P(
    Masks, CudaAttention,
    ::testing::Values(
        AttnCase{"causal_gqa", 2, 29, 29, 4, 2, 16, M::kCausal, 0, 0, false, F, false},
        AttnCase{"nomask_mha", 2, 29, 37, 3, 3, 32, M::kNoMask, 0, 0, false, F, false},
        AttnCase{"window_offset", 2, 7, 37, 6, 3, 32, M::kCausal, 8, 30, false, F, false},
        AttnCase{"padding", 3, 29, 29, 2, 1, 64, M::kPadding, 0, 0, false, F, false},
        AttnCase{"padding_causal", 3, 29, 29, 4, 2, 16, M::kPaddingCausal, 0, 0, false, F, false},
        AttnCase{"arbitrary", 2, 29, 41, 4, 2, 16, M::kArbitrary, 0, 0, false, F, false},
        AttnCase{"decode_seq1", 2, 1, 41, 8, 2, 64, M::kCausal, 0, 40, false, F, false},
        AttnCase{"fused_qkv", 2, 29, 29, 4, 2, 32, M::kCausal, 0, 0, true, F, false},
        AttnCase{"causal_gqa_bf16", 2, 71, 71, 4, 2, 64, M::kCausal, 0, 0, false, B, true},
        AttnCase{"nomask_bf16", 2, 29, 37, 4, 4, 32, M::kNoMask, 0, 0, false, B, true},
        AttnCase{"bottom_right_bf16", 2, 7, 37, 6, 3, 64, M::kCausal, 0, 30, false, B, true},
        AttnCase{"window_fused_bf16", 2, 29, 29, 4, 1, 64, M::kCausal, 5, 0, true, B, true},
        AttnCase{"decode_seq1_bf16", 1, 1, 41, 8, 2, 128, M::kCausal, 0, 40, false, B, true},
        AttnCase{"padding_bf16", 3, 29, 29, 4, 2, 64, M::kPaddingCausal, 0, 0, false, B, false},
        AttnCase{"documents", 2, 29, 29, 4, 2, 16, M::kCausal, 0, 0, false, F, false, true},
        AttnCase{"documents_fused_bf16", 2, 29, 29, 4, 2, 64, M::kCausal, 0, 0, true, B, false,
                 true},
        // Ring-attention chunk pairs: keys of an earlier chunk, queries' ids apart.
        AttnCase{"chunk_pair_documents", 2, 16, 16, 4, 2, 16, M::kCausal, 0, 16, false, F, false,
                 true, true},
        AttnCase{"chunk_pair_documents_window_bf16", 2, 16, 16, 4, 1, 64, M::kPaddingCausal, 20, 16,
                 false, B, false, true, true}),
    [](const ::testing::TestParamInfo<AttnCase>& i) { return std::string(i.param.name); });

// head_dim 256 (Gemma 2B): auto takes cuDNN where this cuDNN supports it on the GPU, else the
// unfused path; whichever ran (printed) must match the unfused kernels' output.
TEST(CudaAttentionBackend, HeadDim256RunsAndMatchesUnfused) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for("hd256");
  const int64_t B = 1, S = 64, Hq = 4, Hkv = 2, D = 256;
  Tensor q = to_gpu(random_host({B, S, Hq, D}, rng, DType::kBF16), DType::kBF16);
  Tensor k = to_gpu(random_host({B, S, Hkv, D}, rng, DType::kBF16), DType::kBF16);
  Tensor v = to_gpu(random_host({B, S, Hkv, D}, rng, DType::kBF16), DType::kBF16);
  Tensor out[2], lse = Tensor::empty({B, Hq, S}, DType::kF32, gpu());
  AttnBackend ran[2];
  const AttnBackend want[2] = {AttnBackend::kAuto, AttnBackend::kUnfused};
  for (int i = 0; i < 2; ++i) {
    out[i] = poisoned({B, S, Hq, D}, DType::kBF16);
    AttnFwdParams f;
    f.q = q.raw(), f.k = k.raw(), f.v = v.raw(), f.out = out[i].raw();
    f.lse = static_cast<float*>(lse.raw());
    f.shape.batch = B, f.shape.seq_q = f.shape.seq_kv = S, f.shape.heads_q = Hq;
    f.shape.heads_kv = Hkv, f.shape.head_dim = D, f.dtype = DType::kBF16, f.device = gpu();
    f.backend = want[i], f.ran = &ran[i];
    attn_fwd(f);
  }
  std::printf("  head_dim 256 under auto ran: %s\n", attn_backend_name(ran[0]));
  EXPECT_TRUE(ran[0] == AttnBackend::kCudnn || ran[0] == AttnBackend::kUnfused);
  EXPECT_EQ(ran[1], AttnBackend::kUnfused);
  // Both round P (or its tiles) to bf16 before the PV product: 2^-7 of the largest output.
  double mx = 0;
  for (float x : to_host_f32(out[1]).to_f32_vector()) mx = std::max(mx, std::fabs(double(x)));
  expect_close(out[0], out[1], Tol{std::ldexp(mx, -7), 1e-2}, "hd256 auto vs unfused");
}

// The backend request is strict when named and the kernel reports what ran: f32 is outside cuDNN,
// so auto runs (and reports) the unfused path and cudnn is an InputError saying why.
TEST(CudaAttentionBackend, StrictCudnnRejectsAndAutoReportsFallback) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for("backend");
  const int64_t B = 1, S = 16, H = 2, D = 16;
  Tensor q = to_gpu(random_host({B, S, H, D}, rng, DType::kF32), DType::kF32);
  Tensor o = Tensor::empty({B, S, H, D}, DType::kF32, gpu());
  Tensor lse = Tensor::empty({B, H, S}, DType::kF32, gpu());
  AttnFwdParams f;
  f.q = f.k = f.v = q.raw(), f.out = o.raw(), f.lse = static_cast<float*>(lse.raw());
  f.shape.batch = B, f.shape.seq_q = f.shape.seq_kv = S, f.shape.heads_q = f.shape.heads_kv = H;
  f.shape.head_dim = D, f.dtype = DType::kF32, f.device = gpu();
  AttnBackend ran = AttnBackend::kCpu;
  f.ran = &ran;
  f.backend = AttnBackend::kAuto;
  attn_fwd(f);
  EXPECT_EQ(ran, AttnBackend::kUnfused);
  f.backend = AttnBackend::kCudnn;
  try {
    attn_fwd(f);
    ADD_FAILURE() << "attention = cudnn ran an f32 problem";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("attention = cudnn"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace graft
