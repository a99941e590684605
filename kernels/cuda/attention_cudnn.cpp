// cuDNN fused attention: graph construction, plan cache and execution (see attention_cudnn.h).
//
// One graph per problem (shape, strides, dtype, mask, scale, direction), built on first use and
// cached; execution only binds pointers and a workspace from the caching allocator. cuDNN's
// tensors are [b, h, s, d] with explicit strides, so a bshd tensor with element strides
// (sb, ss, sh) is dims {B, H, S, D}, strides {sb, sh, ss, 1}. Its softmax statistics ("Stats",
// [B, H, Sq, 1] f32, natural-log logsumexp of the scaled scores) are graft's lse [B, Hq, Sq].
#include "kernels/cuda/attention_cudnn.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/stream.h"

#ifdef GRAFT_HAVE_CUDNN_FE
#include <cudnn_frontend.h>
#endif

namespace graft::cuda {

namespace {
BshdStrides resolve(BshdStrides s, int64_t seq, int64_t heads, int64_t dim) {
  if (!s.h) s.h = dim;
  if (!s.s) s.s = heads * dim;
  if (!s.b) s.b = seq * heads * dim;
  return s;
}
}  // namespace

std::string cudnn_attn_reject_reason(const AttnShape& sh, DType dtype) {
#ifndef GRAFT_HAVE_CUDNN_FE
  return "graft was built without the cuDNN frontend headers";
#else
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return str("dtype ", dtype_name(dtype), " (cuDNN flash attention takes bf16 or f16)");
  }
  // Up to 256 (Gemma): cuDNN 9 runs d = 256 on Hopper; where this cuDNN cannot, its own
  // check_support rejects the graph with a reason (logged, or an error under attention = cudnn).
  if (sh.head_dim % 8 != 0 || sh.head_dim > 256) {
    return str("head_dim = ", sh.head_dim, " (needs a multiple of 8, at most 256)");
  }
  if (sh.mask != AttnMask::kNoMask && sh.mask != AttnMask::kCausal) {
    return str("mask ", attn_mask_name(sh.mask), " (only no mask and causal are mapped)");
  }
  if (sh.segment_ids) return "document masking (segment ids are not mapped to cuDNN yet)";
  if (sh.window > 0 && sh.mask != AttnMask::kCausal) return "a sliding window without causal";
  if (sh.mask == AttnMask::kCausal && sh.q_offset != 0 && sh.q_offset != sh.seq_kv - sh.seq_q) {
    return str("q_offset = ", sh.q_offset,
               " is neither 0 nor seq_kv - seq_q = ", sh.seq_kv - sh.seq_q);
  }
  if (sh.mask == AttnMask::kCausal && sh.q_offset == 0 && sh.seq_q > sh.seq_kv) {
    return str("causal with seq_q = ", sh.seq_q, " > seq_kv = ", sh.seq_kv);
  }
  if (sh.seq_q == 0 || sh.seq_kv == 0 || sh.batch == 0) return "an empty problem";
  return "";
#endif
}

#ifndef GRAFT_HAVE_CUDNN_FE

bool cudnn_attn_fwd(const AttnFwdParams&, std::string* why) {
  *why = cudnn_attn_reject_reason({}, DType::kF32);
  return false;
}
bool cudnn_attn_bwd(const AttnBwdParams&, std::string* why) {
  *why = cudnn_attn_reject_reason({}, DType::kF32);
  return false;
}

#else

namespace fe = cudnn_frontend;

namespace {

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

#define GRAFT_CUDNN_CHECK(expr)                              \
  do {                                                       \
    cudnnStatus_t graft_s_ = (expr);                         \
    GRAFT_CHECK(graft_s_ == CUDNN_STATUS_SUCCESS, #expr,     \
                " failed: ", cudnnGetErrorString(graft_s_)); \
  } while (0)

cudnnHandle_t handle_for(int device) {
  static std::mutex mu;
  static auto* handles = new std::map<int, cudnnHandle_t>();  // leaked: used until exit
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  DeviceGuard g(device);
  cudnnHandle_t h = nullptr;
  GRAFT_CUDNN_CHECK(cudnnCreate(&h));
  handles->emplace(device, h);
  return h;
}

fe::DataType_t fe_type(DType t) {
  return t == DType::kBF16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
}

struct Problem {
  AttnShape sh;
  DType dtype;
  std::vector<BshdStrides> strides;  // fwd: q k v o; bwd: q k v o do dq dk dv
  bool backward;
  int device;

  auto key() const {
    std::vector<int64_t> k{sh.batch,
                           sh.seq_q,
                           sh.seq_kv,
                           sh.heads_q,
                           sh.heads_kv,
                           sh.head_dim,
                           static_cast<int64_t>(sh.mask),
                           sh.window,
                           sh.q_offset,
                           static_cast<int64_t>(dtype),
                           backward,
                           device};
    uint32_t sbits;
    std::memcpy(&sbits, &sh.scale, sizeof(sbits));
    k.push_back(sbits);
    for (const BshdStrides& s : strides) k.insert(k.end(), {s.b, s.s, s.h});
    return k;
  }
};

std::shared_ptr<fe::graph::Tensor_attributes> bshd(fe::graph::Graph& g, const char* name, Uid uid,
                                                   int64_t b, int64_t h, int64_t s, int64_t d,
                                                   const BshdStrides& st) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({b, h, s, d})
                      .set_stride({st.b, st.h, st.s, 1}));
}

void set_bshd_output(const std::shared_ptr<fe::graph::Tensor_attributes>& t, Uid uid, int64_t b,
                     int64_t h, int64_t s, int64_t d, const BshdStrides& st) {
  t->set_output(true).set_uid(uid).set_dim({b, h, s, d}).set_stride({st.b, st.h, st.s, 1});
}

template <class Attrs>
void apply_mask(Attrs& a, const AttnShape& sh) {
  if (sh.mask != AttnMask::kCausal) return;
  if (sh.q_offset == 0) {
    a.set_causal_mask(true);
  } else {
    a.set_causal_mask_bottom_right(true);
  }
  if (sh.window > 0) a.set_diagonal_band_left_bound(static_cast<int>(sh.window));
}

float scale_of(const AttnShape& sh) {
  return sh.scale > 0.0f ? sh.scale : 1.0f / std::sqrt(static_cast<float>(sh.head_dim));
}

// Builds the graph; returns nullptr and sets `why` when cuDNN does not support it.
std::shared_ptr<fe::graph::Graph> build(const Problem& pr, std::string* why) {
  const AttnShape& sh = pr.sh;
  const int64_t B = sh.batch, Hq = sh.heads_q, Hkv = sh.heads_kv, Sq = sh.seq_q, Skv = sh.seq_kv,
                D = sh.head_dim;
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe_type(pr.dtype))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto q = bshd(*g, "Q", kQ, B, Hq, Sq, D, pr.strides[0]);
  auto k = bshd(*g, "K", kK, B, Hkv, Skv, D, pr.strides[1]);
  auto v = bshd(*g, "V", kV, B, Hkv, Skv, D, pr.strides[2]);
  if (!pr.backward) {
    auto opts = fe::graph::SDPA_attributes()
                    .set_name("graft_sdpa_fwd")
                    .set_generate_stats(true)
                    .set_attn_scale(scale_of(sh));
    apply_mask(opts, sh);
    auto [o, stats] = g->sdpa(q, k, v, opts);
    set_bshd_output(o, kO, B, Hq, Sq, D, pr.strides[3]);
    stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
    stats->set_dim({B, Hq, Sq, 1}).set_stride({Hq * Sq, Sq, 1, 1});
  } else {
    auto o = bshd(*g, "O", kO, B, Hq, Sq, D, pr.strides[3]);
    auto dout = bshd(*g, "dO", kDO, B, Hq, Sq, D, pr.strides[4]);
    auto stats = g->tensor(fe::graph::Tensor_attributes()
                               .set_name("Stats")
                               .set_uid(kStats)
                               .set_dim({B, Hq, Sq, 1})
                               .set_stride({Hq * Sq, Sq, 1, 1})
                               .set_data_type(fe::DataType_t::FLOAT));
    auto opts = fe::graph::SDPA_backward_attributes()
                    .set_name("graft_sdpa_bwd")
                    .set_attn_scale(scale_of(sh));
    apply_mask(opts, sh);
    auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, opts);
    set_bshd_output(dq, kDQ, B, Hq, Sq, D, pr.strides[5]);
    set_bshd_output(dk, kDK, B, Hkv, Skv, D, pr.strides[6]);
    set_bshd_output(dv, kDV, B, Hkv, Skv, D, pr.strides[7]);
  }
  cudnnHandle_t h = handle_for(pr.device);
  auto step = [&](fe::error_t e, const char* what) {
    if (e.is_good()) return true;
    *why = str("cuDNN ", what, ": ", e.get_message());
    return false;
  };
  if (!step(g->validate(), "validate")) return nullptr;
  if (!step(g->build_operation_graph(h), "build_operation_graph")) return nullptr;
  if (!step(g->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans")) {
    return nullptr;
  }
  if (!step(g->check_support(h), "check_support")) return nullptr;
  if (!step(g->build_plans(h), "build_plans")) return nullptr;
  return g;
}

struct CacheEntry {
  std::shared_ptr<fe::graph::Graph> graph;  // null: unsupported (why)
  std::string why;
  int64_t workspace = 0;
};

// Returns the cached graph for the problem (building it once); null when unsupported.
CacheEntry* lookup(const Problem& pr) {
  static std::mutex mu;
  static auto* cache = new std::map<std::vector<int64_t>, CacheEntry>();  // leaked
  std::lock_guard<std::mutex> lock(mu);
  auto key = pr.key();
  auto it = cache->find(key);
  if (it == cache->end()) {
    CacheEntry e;
    DeviceGuard dg(pr.device);
    e.graph = build(pr, &e.why);
    if (e.graph) {
      fe::error_t st = e.graph->get_workspace_size(e.workspace);
      if (!st.is_good()) {
        e.why = str("cuDNN get_workspace_size: ", st.get_message());
        e.graph.reset();
      }
    }
    it = cache->emplace(std::move(key), std::move(e)).first;
  }
  return &it->second;
}

bool run(const Problem& pr, std::unordered_map<int64_t, void*>& pack, void* stream, Device dev,
         std::string* why) {
  CacheEntry* e = lookup(pr);
  if (!e->graph) {
    *why = e->why;
    return false;
  }
  DeviceGuard dg(pr.device);
  cudaStream_t s = stream_or_current(stream, dev);
  cudnnHandle_t h = handle_for(pr.device);
  GRAFT_CUDNN_CHECK(cudnnSetStream(h, s));
  void* ws = e->workspace > 0 ? CachingAllocator::instance().allocate(
                                    static_cast<size_t>(e->workspace), pr.device, s)
                              : nullptr;
  fe::error_t st = e->graph->execute(h, pack, ws);
  CachingAllocator::instance().release(ws);  // stream-ordered: safe once queued
  GRAFT_CHECK(st.is_good(), "cuDNN attention execute failed: ", st.get_message());
  return true;
}

}  // namespace

bool cudnn_attn_fwd(const AttnFwdParams& p, std::string* why) {
  const AttnShape& sh = p.shape;
  *why = cudnn_attn_reject_reason(sh, p.dtype);
  if (!why->empty()) return false;
  Problem pr{sh,
             p.dtype,
             {resolve(p.q_strides, sh.seq_q, sh.heads_q, sh.head_dim),
              resolve(p.k_strides, sh.seq_kv, sh.heads_kv, sh.head_dim),
              resolve(p.v_strides, sh.seq_kv, sh.heads_kv, sh.head_dim),
              resolve(p.out_strides, sh.seq_q, sh.heads_q, sh.head_dim)},
             false,
             p.device.index};
  pr.sh.key_padding = pr.sh.arbitrary_mask = nullptr;
  // Stats are always produced; without a caller buffer they go to scratch.
  const size_t lse_bytes = static_cast<size_t>(sh.batch * sh.heads_q * sh.seq_q) * sizeof(float);
  cudaStream_t s = stream_or_current(p.stream, p.device);
  void* lse_tmp =
      p.lse ? nullptr : CachingAllocator::instance().allocate(lse_bytes, p.device.index, s);
  std::unordered_map<int64_t, void*> pack{{kQ, const_cast<void*>(p.q)},
                                          {kK, const_cast<void*>(p.k)},
                                          {kV, const_cast<void*>(p.v)},
                                          {kO, p.out},
                                          {kStats, p.lse ? static_cast<void*>(p.lse) : lse_tmp}};
  const bool ok = run(pr, pack, p.stream, p.device, why);
  CachingAllocator::instance().release(lse_tmp);
  return ok;
}

bool cudnn_attn_bwd(const AttnBwdParams& p, std::string* why) {
  const AttnShape& sh = p.shape;
  *why = cudnn_attn_reject_reason(sh, p.dtype);
  if (!why->empty()) return false;
  const int64_t Sq = sh.seq_q, Skv = sh.seq_kv, Hq = sh.heads_q, Hkv = sh.heads_kv, D = sh.head_dim;
  Problem pr{sh,
             p.dtype,
             {resolve(p.q_strides, Sq, Hq, D), resolve(p.k_strides, Skv, Hkv, D),
              resolve(p.v_strides, Skv, Hkv, D), resolve(p.out_strides, Sq, Hq, D),
              resolve(p.dout_strides, Sq, Hq, D), resolve(p.dq_strides, Sq, Hq, D),
              resolve(p.dk_strides, Skv, Hkv, D), resolve(p.dv_strides, Skv, Hkv, D)},
             true,
             p.device.index};
  pr.sh.key_padding = pr.sh.arbitrary_mask = nullptr;
  std::unordered_map<int64_t, void*> pack{{kQ, const_cast<void*>(p.q)},
                                          {kK, const_cast<void*>(p.k)},
                                          {kV, const_cast<void*>(p.v)},
                                          {kO, const_cast<void*>(p.out)},
                                          {kDO, const_cast<void*>(p.dout)},
                                          {kStats, const_cast<float*>(p.lse)},
                                          {kDQ, p.dq},
                                          {kDK, p.dk},
                                          {kDV, p.dv}};
  return run(pr, pack, p.stream, p.device, why);
}

#endif  // GRAFT_HAVE_CUDNN_FE

}  // namespace graft::cuda
