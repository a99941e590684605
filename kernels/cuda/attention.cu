// Scaled dot-product attention on CUDA (the math is in kernels/attention.h): the entry point that
// picks a backend, and the unfused fallback.
//
// Backends: cuDNN fused flash attention (attention_cudnn.h) where it supports the problem, else
// the unfused kernels below. The params' `backend` selects (the recipe's model.attention): kAuto
// (cuDNN, falling back loudly), kCudnn (strict: a fallback is an InputError saying why) or
// kUnfused; the backend that ran is written to *p.ran. The log (stderr) says once which backend
// ran and, once per reason, why cuDNN was rejected. Both backends define lse identically
// (natural-log logsumexp of the scaled scores), so a forward on one and a backward on the other
// agree.
//
// Unfused fallback:
// Per batch entry b and per position r inside a GQA group (query head h = g * G + r for kv head
// g, G = Hq / Hkv), every kv head g is one entry of a strided-batched cuBLASLt GEMM, so K and V
// are read in place (no repeat_kv copies) and q/k/v/out may be strided views of a fused buffer:
//   forward:  S = scale Q_h K_g^T          [Hkv, Sq, Skv] f32 scratch
//             P = masked_softmax(S), lse   (one kernel; P in the activation dtype)
//             O_h = P V_g                  written into out
//   backward: delta_i = <dO_i, O_i>        (once, [B, Hq, Sq])
//             recompute S, P = exp(S - lse) (masked entries 0)
//             dV_g += P^T dO_h; dP = dO_h V_g^T; dS = P (dP - delta)
//             dQ_h = scale dS K_g;  dK_g += scale dS^T Q_h
//             (dK, dV accumulate over the group in f32 scratch, then cast into dk, dv)
// Scratch is O(Hkv Sq Skv) for one (b, r) at a time, from the caching allocator. Masks
// (causal with q_offset, padding, arbitrary, sliding window, document ids) are evaluated in the
// softmax kernels; a fully masked row gives P = 0, out = 0 and lse = -inf.
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

#include "kernels/attention.h"
#include "kernels/cuda/attention_cudnn.h"
#include "kernels/cuda/common.cuh"
#include "kernels/gemm.h"

namespace graft::cuda {
namespace {

struct MaskInfo {
  AttnMask mask;
  const void* key_padding;
  int key_padding_bytes;  // 1, 4 or 8
  const uint8_t* arbitrary;
  int64_t mask_batch, seq_q, seq_kv, window, q_offset;
  const void* segment;    // [B, Skv] document ids or null
  int segment_bytes;      // 4 or 8
  const void* q_segment;  // [B, Sq] the queries' document ids or null (then segment[b, a])
};

__device__ __forceinline__ int64_t segment_at(const MaskInfo& mi, int64_t k, const void* ids) {
  return mi.segment_bytes == 4 ? static_cast<const int32_t*>(ids)[k]
                               : static_cast<const int64_t*>(ids)[k];
}

__device__ __forceinline__ bool is_masked(const MaskInfo& mi, int64_t b, int64_t i, int64_t j) {
  const int64_t a = mi.q_offset + i;
  if ((mi.mask == AttnMask::kCausal || mi.mask == AttnMask::kPaddingCausal) && j > a) return true;
  if (mi.window > 0 && j <= a - mi.window) return true;
  if (mi.mask == AttnMask::kPadding || mi.mask == AttnMask::kPaddingCausal) {
    const int64_t k = b * mi.seq_kv + j;
    bool keep;
    if (mi.key_padding_bytes == 1) {
      keep = static_cast<const uint8_t*>(mi.key_padding)[k] != 0;
    } else if (mi.key_padding_bytes == 4) {
      keep = static_cast<const int32_t*>(mi.key_padding)[k] != 0;
    } else {
      keep = static_cast<const int64_t*>(mi.key_padding)[k] != 0;
    }
    if (!keep) return true;
  }
  if (mi.segment) {
    const int64_t qs = mi.q_segment ? segment_at(mi, b * mi.seq_q + i, mi.q_segment)
                                    : segment_at(mi, b * mi.seq_kv + a, mi.segment);
    if (segment_at(mi, b * mi.seq_kv + j, mi.segment) != qs) return true;
  }
  if (mi.mask == AttnMask::kArbitrary) {
    const int64_t mb = mi.mask_batch == 1 ? 0 : b;
    if (mi.arbitrary[(mb * mi.seq_q + i) * mi.seq_kv + j] != 0) return true;
  }
  return false;
}

// Rows of S are (g, i) for g < Hkv, i < Sq; query head h = g * G + r.
struct RowGeom {
  int64_t b, r, group, heads_q, seq_q, seq_kv;
};

// Forward: P = softmax(masked S) in T; lse[b, h, i] (optional).
template <class T>
__global__ void attn_softmax_fwd_kernel(const float* S, T* P, float* lse, MaskInfo mi, RowGeom rg) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t g = row / rg.seq_q, i = row % rg.seq_q;
  const float* s = S + row * rg.seq_kv;
  T* p = P + row * rg.seq_kv;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < rg.seq_kv; j += blockDim.x) {
    if (!is_masked(mi, rg.b, i, j)) m = fmaxf(m, s[j]);
  }
  m = block_max(m, scratch);
  float sum = 0.0f;
  if (m != -INFINITY) {
    for (int64_t j = threadIdx.x; j < rg.seq_kv; j += blockDim.x) {
      if (!is_masked(mi, rg.b, i, j)) sum += expf(s[j] - m);
    }
  }
  sum = block_sum(sum, scratch);
  const float l = m == -INFINITY ? -INFINITY : m + logf(sum);
  for (int64_t j = threadIdx.x; j < rg.seq_kv; j += blockDim.x) {
    const bool dead = l == -INFINITY || is_masked(mi, rg.b, i, j);
    p[j] = from_f32<T>(dead ? 0.0f : expf(s[j] - l));
  }
  if (lse && threadIdx.x == 0) {
    const int64_t h = g * rg.group + rg.r;
    lse[(rg.b * rg.heads_q + h) * rg.seq_q + i] = l;
  }
}

// Backward, step 1: P = exp(S - lse) (masked 0) kept in f32 in S, and in T in Pt.
template <class T>
__global__ void attn_recompute_p_kernel(float* S, T* Pt, const float* lse, MaskInfo mi,
                                        RowGeom rg) {
  const int64_t row = blockIdx.x;
  const int64_t g = row / rg.seq_q, i = row % rg.seq_q;
  const float l = lse[(rg.b * rg.heads_q + g * rg.group + rg.r) * rg.seq_q + i];
  float* s = S + row * rg.seq_kv;
  T* pt = Pt + row * rg.seq_kv;
  for (int64_t j = threadIdx.x; j < rg.seq_kv; j += blockDim.x) {
    const bool dead = l == -INFINITY || is_masked(mi, rg.b, i, j);
    const float pv = dead ? 0.0f : expf(s[j] - l);
    s[j] = pv;
    pt[j] = from_f32<T>(pv);
  }
}

// Backward, step 2: dS = P (dP - delta_i), written in T over Pt.
template <class T>
__global__ void attn_ds_kernel(const float* P, const float* dP, T* dS, const float* delta,
                               RowGeom rg) {
  const int64_t row = blockIdx.x;
  const int64_t g = row / rg.seq_q, i = row % rg.seq_q;
  const float d = delta[(rg.b * rg.heads_q + g * rg.group + rg.r) * rg.seq_q + i];
  const int64_t off = row * rg.seq_kv;
  for (int64_t j = threadIdx.x; j < rg.seq_kv; j += blockDim.x) {
    dS[off + j] = from_f32<T>(P[off + j] * (dP[off + j] - d));
  }
}

// delta[b, h, i] = <dout[b, i, h, :], out[b, i, h, :]>, one warp per row.
template <class T>
__global__ void attn_delta_kernel(const T* dout, const T* out, float* delta, BshdStrides ds,
                                  BshdStrides os, int64_t batch, int64_t heads, int64_t seq,
                                  int64_t dim) {
  const int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= batch * heads * seq) return;
  const int64_t i = row % seq, h = (row / seq) % heads, b = row / (seq * heads);
  const T* dr = dout + b * ds.b + i * ds.s + h * ds.h;
  const T* orow = out + b * os.b + i * os.s + h * os.h;
  float acc = 0.0f;
  for (int64_t d = lane; d < dim; d += 32) acc += to_f32(dr[d]) * to_f32(orow[d]);
  acc = warp_sum(acc);
  if (lane == 0) delta[row] = acc;  // row = (b * heads + h) * seq + i
}

// dst[b, j, g, :] = src[g, j, :] (f32 -> T), for one batch entry b.
template <class T>
__global__ void attn_store_kv_grad_kernel(const float* src, T* dst, BshdStrides st,
                                          int64_t heads_kv, int64_t seq_kv, int64_t dim) {
  const int64_t total = heads_kv * seq_kv * dim;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = idx % dim, j = (idx / dim) % seq_kv, g = idx / (dim * seq_kv);
    dst[j * st.s + g * st.h + d] = from_f32<T>(src[idx]);
  }
}

BshdStrides resolve(BshdStrides s, int64_t seq, int64_t heads, int64_t dim) {
  if (!s.h) s.h = dim;
  if (!s.s) s.s = heads * dim;
  if (!s.b) s.b = seq * heads * dim;
  return s;
}

MaskInfo mask_info(const AttnShape& sh) {
  MaskInfo mi{
      sh.mask,       sh.key_padding, 1,         static_cast<const uint8_t*>(sh.arbitrary_mask),
      sh.mask_batch, sh.seq_q,       sh.seq_kv, sh.window,
      sh.q_offset,   sh.segment_ids, 8,         sh.q_segment_ids};
  if (sh.segment_ids) {
    GRAFT_CHECK(sh.segment_ids_dtype == DType::kI32 || sh.segment_ids_dtype == DType::kI64,
                "attention: segment_ids dtype ", dtype_name(sh.segment_ids_dtype),
                " (expected i32 or i64)");
    GRAFT_CHECK(sh.q_segment_ids || sh.seq_kv >= sh.q_offset + sh.seq_q,
                "attention: segment_ids without q_segment_ids need seq_kv = ", sh.seq_kv,
                " >= q_offset + seq_q = ", sh.q_offset + sh.seq_q);
    mi.segment_bytes = static_cast<int>(dtype_size(sh.segment_ids_dtype));
  }
  if (sh.mask == AttnMask::kPadding || sh.mask == AttnMask::kPaddingCausal) {
    GRAFT_CHECK(sh.key_padding, "attention: mask ", attn_mask_name(sh.mask), " needs key_padding");
    const DType t = sh.key_padding_dtype;
    GRAFT_CHECK(t == DType::kU8 || t == DType::kBool || t == DType::kI32 || t == DType::kI64,
                "attention: key_padding dtype ", dtype_name(t), " (expected u8, bool, i32, i64)");
    mi.key_padding_bytes = static_cast<int>(dtype_size(t));
  }
  if (sh.mask == AttnMask::kArbitrary) {
    GRAFT_CHECK(sh.arbitrary_mask, "attention: mask arbitrary needs arbitrary_mask");
    GRAFT_CHECK(sh.arbitrary_mask_dtype == DType::kU8 || sh.arbitrary_mask_dtype == DType::kBool,
                "attention: arbitrary_mask dtype ", dtype_name(sh.arbitrary_mask_dtype));
    GRAFT_CHECK(sh.mask_batch == 1 || sh.mask_batch == sh.batch,
                "attention: mask_batch = ", sh.mask_batch, " must be 1 or batch = ", sh.batch);
  }
  return mi;
}

void check_shape(const AttnShape& sh, const char* name) {
  GRAFT_CHECK(sh.heads_kv > 0 && sh.heads_q % sh.heads_kv == 0, name, ": heads_q = ", sh.heads_q,
              " must be a multiple of heads_kv = ", sh.heads_kv);
  GRAFT_CHECK(sh.head_dim > 0 && sh.batch >= 0 && sh.seq_q >= 0 && sh.seq_kv >= 0, name,
              ": bad sizes");
}

// Byte offset helper.
template <class P>
P* at(P* base, int64_t elems, size_t es) {
  using B = std::conditional_t<std::is_const_v<P>, const char, char>;
  return reinterpret_cast<P*>(reinterpret_cast<B*>(base) + elems * static_cast<int64_t>(es));
}

// One strided-batched GEMM over the Hkv kv heads (batch = Hkv).
struct BatchedGemm {
  DType dtype;
  Device device;
  void* stream;
  void run(const void* a, int64_t lda, int64_t sa, bool ta, const void* b, int64_t ldb, int64_t sb,
           bool tb, void* c, int64_t ldc, int64_t sc, DType c_dtype, int64_t m, int64_t n,
           int64_t k, int64_t batch, float alpha, float beta) const {
    GemmParams g;
    g.a = a;
    g.b = b;
    g.c = c;
    g.m = m;
    g.n = n;
    g.k = k;
    g.trans_a = ta;
    g.trans_b = tb;
    g.lda = lda;
    g.ldb = ldb;
    g.ldc = ldc;
    g.alpha = alpha;
    g.beta = beta;
    g.batch = batch;
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = sc;
    g.dtype = dtype;
    g.c_dtype = c_dtype;
    g.device = device;
    g.stream = stream;
    gemm(g);
  }
};

void log_once(const std::string& msg) {
  static std::mutex mu;
  static auto* seen = new std::set<std::string>();
  std::lock_guard<std::mutex> lock(mu);
  if (seen->insert(msg).second) std::fprintf(stderr, "[graft] %s\n", msg.c_str());
}

// Runs cuDNN when chosen and possible; returns false when the unfused path must run.
// Sets *p.ran to the backend that will have run.
template <class P, class F>
bool try_cudnn(const P& p, F cudnn_fn, const char* dir) {
  const AttnBackend b = p.backend;
  GRAFT_CHECK(b != AttnBackend::kCpu, "attention ", dir, ": backend cpu on a CUDA device");
  auto ran = [&](AttnBackend r) {
    if (p.ran) *p.ran = r;
    return r == AttnBackend::kCudnn;
  };
  if (b == AttnBackend::kUnfused) {
    log_once(str("attention ", dir, ": unfused backend (attention = unfused)"));
    return ran(AttnBackend::kUnfused);
  }
  std::string why;
  if (cudnn_fn(p, &why)) {
    log_once(str("attention ", dir, ": cuDNN fused flash attention"));
    return ran(AttnBackend::kCudnn);
  }
  GRAFT_INPUT_CHECK(b != AttnBackend::kCudnn, "attention = cudnn but cuDNN cannot run the ", dir,
                    " of this problem: ", why);
  log_once(str("attention ", dir, ": cuDNN rejected (", why, "); running the unfused fallback"));
  return ran(AttnBackend::kUnfused);
}

float resolved_scale(const AttnShape& sh) {
  return sh.scale > 0.0f ? sh.scale : 1.0f / sqrtf(static_cast<float>(sh.head_dim));
}

void launch_attn_fwd(const AttnFwdParams& p) {
  const AttnShape& sh = p.shape;
  check_shape(sh, "attn_fwd");
  if (sh.batch == 0 || sh.seq_q == 0 || sh.heads_q == 0) return;
  GRAFT_CHECK(sh.seq_kv > 0, "attn_fwd: seq_kv = 0");
  if (try_cudnn(p, cudnn_attn_fwd, "forward")) return;
  const int dev = p.device.index;
  DeviceGuard dg(dev);
  cudaStream_t s = stream_of(p);
  const int64_t Hq = sh.heads_q, Hkv = sh.heads_kv, G = Hq / Hkv, D = sh.head_dim;
  const int64_t Sq = sh.seq_q, Skv = sh.seq_kv;
  const BshdStrides qs = resolve(p.q_strides, Sq, Hq, D), ks = resolve(p.k_strides, Skv, Hkv, D);
  const BshdStrides vs = resolve(p.v_strides, Skv, Hkv, D);
  const BshdStrides os = resolve(p.out_strides, Sq, Hq, D);
  const MaskInfo mi = mask_info(sh);
  const float scale = resolved_scale(sh);
  const size_t es = dtype_size(p.dtype);
  const int64_t plane = Sq * Skv;
  Scratch S(static_cast<size_t>(Hkv * plane) * sizeof(float), dev, s);
  Scratch P(static_cast<size_t>(Hkv * plane) * es, dev, s);
  const BatchedGemm bg{p.dtype, p.device, s};
  for (int64_t b = 0; b < sh.batch; ++b) {
    for (int64_t r = 0; r < G; ++r) {
      // S[g] = scale Q_{gG+r} K_g^T
      bg.run(at(p.q, b * qs.b + r * qs.h, es), qs.s, G * qs.h, false, at(p.k, b * ks.b, es), ks.s,
             ks.h, true, S.as<void>(), Skv, plane, DType::kF32, Sq, Skv, D, Hkv, scale, 0.0f);
      const RowGeom rg{b, r, G, Hq, Sq, Skv};
      GRAFT_FLOAT_SWITCH(p.dtype, T, "attn_fwd", {
        attn_softmax_fwd_kernel<T><<<static_cast<unsigned>(Hkv * Sq), row_threads(Skv), 0, s>>>(
            S.as<float>(), P.as<T>(), p.lse, mi, rg);
      });
      GRAFT_CUDA_CHECK_LAUNCH();
      // O_{gG+r} = P[g] V_g
      bg.run(P.as<void>(), Skv, plane, false, at(p.v, b * vs.b, es), vs.s, vs.h, false,
             at(p.out, b * os.b + r * os.h, es), os.s, G * os.h, p.dtype, Sq, D, Skv, Hkv, 1.0f,
             0.0f);
    }
  }
}

void launch_attn_bwd(const AttnBwdParams& p) {
  const AttnShape& sh = p.shape;
  check_shape(sh, "attn_bwd");
  if (sh.batch == 0 || sh.heads_q == 0) return;
  const int dev = p.device.index;
  DeviceGuard dg(dev);
  cudaStream_t s = stream_of(p);
  const int64_t Hq = sh.heads_q, Hkv = sh.heads_kv, G = Hq / Hkv, D = sh.head_dim;
  const int64_t Sq = sh.seq_q, Skv = sh.seq_kv;
  GRAFT_CHECK(Skv > 0, "attn_bwd: seq_kv = 0");
  if (Sq > 0 && try_cudnn(p, cudnn_attn_bwd, "backward")) return;
  const BshdStrides qs = resolve(p.q_strides, Sq, Hq, D), ks = resolve(p.k_strides, Skv, Hkv, D);
  const BshdStrides vs = resolve(p.v_strides, Skv, Hkv, D);
  const BshdStrides os = resolve(p.out_strides, Sq, Hq, D);
  const BshdStrides dos = resolve(p.dout_strides, Sq, Hq, D);
  const BshdStrides dqs = resolve(p.dq_strides, Sq, Hq, D);
  const BshdStrides dks = resolve(p.dk_strides, Skv, Hkv, D);
  const BshdStrides dvs = resolve(p.dv_strides, Skv, Hkv, D);
  const MaskInfo mi = mask_info(sh);
  const float scale = resolved_scale(sh);
  const size_t es = dtype_size(p.dtype);
  const int64_t plane = Sq * Skv;
  Scratch delta(static_cast<size_t>(sh.batch * Hq * Sq + 1) * sizeof(float), dev, s);
  Scratch S(static_cast<size_t>(Hkv * plane + 1) * sizeof(float), dev, s);
  Scratch dP(static_cast<size_t>(Hkv * plane + 1) * sizeof(float), dev, s);
  Scratch Pt(static_cast<size_t>(Hkv * plane + 1) * es, dev, s);
  Scratch dK(static_cast<size_t>(Hkv * Skv * D) * sizeof(float), dev, s);
  Scratch dV(static_cast<size_t>(Hkv * Skv * D) * sizeof(float), dev, s);
  const BatchedGemm bg{p.dtype, p.device, s};
  const int threads = row_threads(Skv);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "attn_bwd", {
    if (Sq > 0) {
      const int64_t rows = sh.batch * Hq * Sq;
      attn_delta_kernel<T><<<static_cast<unsigned>(ceil_div(rows * 32, 256)), 256, 0, s>>>(
          static_cast<const T*>(p.dout), static_cast<const T*>(p.out), delta.as<float>(), dos, os,
          sh.batch, Hq, Sq, D);
      GRAFT_CUDA_CHECK_LAUNCH();
    }
    for (int64_t b = 0; b < sh.batch; ++b) {
      if (Sq == 0) {
        GRAFT_CUDA_CHECK(cudaMemsetAsync(dK.as<void>(), 0, Hkv * Skv * D * sizeof(float), s));
        GRAFT_CUDA_CHECK(cudaMemsetAsync(dV.as<void>(), 0, Hkv * Skv * D * sizeof(float), s));
      }
      for (int64_t r = 0; r < G && Sq > 0; ++r) {
        const float beta = r == 0 ? 0.0f : 1.0f;
        const void* q_r = at(p.q, b * qs.b + r * qs.h, es);
        const void* do_r = at(p.dout, b * dos.b + r * dos.h, es);
        const void* k_b = at(p.k, b * ks.b, es);
        const void* v_b = at(p.v, b * vs.b, es);
        bg.run(q_r, qs.s, G * qs.h, false, k_b, ks.s, ks.h, true, S.as<void>(), Skv, plane,
               DType::kF32, Sq, Skv, D, Hkv, scale, 0.0f);
        const RowGeom rg{b, r, G, Hq, Sq, Skv};
        const unsigned rows = static_cast<unsigned>(Hkv * Sq);
        attn_recompute_p_kernel<T>
            <<<rows, threads, 0, s>>>(S.as<float>(), Pt.as<T>(), p.lse, mi, rg);
        GRAFT_CUDA_CHECK_LAUNCH();
        // dV_g (+)= P^T dO_h
        bg.run(Pt.as<void>(), Skv, plane, true, do_r, dos.s, G * dos.h, false, dV.as<void>(), D,
               Skv * D, DType::kF32, Skv, D, Sq, Hkv, 1.0f, beta);
        // dP = dO_h V_g^T
        bg.run(do_r, dos.s, G * dos.h, false, v_b, vs.s, vs.h, true, dP.as<void>(), Skv, plane,
               DType::kF32, Sq, Skv, D, Hkv, 1.0f, 0.0f);
        attn_ds_kernel<T><<<rows, threads, 0, s>>>(S.as<float>(), dP.as<float>(), Pt.as<T>(),
                                                   delta.as<float>(), rg);
        GRAFT_CUDA_CHECK_LAUNCH();
        // dQ_h = scale dS K_g
        bg.run(Pt.as<void>(), Skv, plane, false, k_b, ks.s, ks.h, false,
               at(p.dq, b * dqs.b + r * dqs.h, es), dqs.s, G * dqs.h, p.dtype, Sq, D, Skv, Hkv,
               scale, 0.0f);
        // dK_g (+)= scale dS^T Q_h
        bg.run(Pt.as<void>(), Skv, plane, true, q_r, qs.s, G * qs.h, false, dK.as<void>(), D,
               Skv * D, DType::kF32, Skv, D, Sq, Hkv, scale, beta);
      }
      const int64_t n = Hkv * Skv * D;
      attn_store_kv_grad_kernel<T><<<grid_for(n, 256), 256, 0, s>>>(
          dK.as<float>(), static_cast<T*>(p.dk) + b * dks.b, dks, Hkv, Skv, D);
      attn_store_kv_grad_kernel<T><<<grid_for(n, 256), 256, 0, s>>>(
          dV.as<float>(), static_cast<T*>(p.dv) + b * dvs.b, dvs, Hkv, Skv, D);
      GRAFT_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(attn_fwd, AttnFwdParams, cuda::launch_attn_fwd);
GRAFT_REGISTER_CUDA_KERNEL(attn_bwd, AttnBwdParams, cuda::launch_attn_bwd);
}  // namespace graft
