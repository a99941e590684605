#include "layers/context_parallel/ring_attention.h"

#include <cstdio>
#include <limits>
#include <mutex>
#include <vector>

#include "kernels/attn_merge.h"
#include "kernels/elementwise.h"
#include "layers/reference/common.h"
#include "layers/reference/sdpa.h"

namespace graft::layers {
namespace {

// Which global chunk each half of a rank's rows is, and the pair geometry.
struct Chunks {
  int cp = 1, rank = 0;
  int64_t c = 0;  // rows per chunk
  int64_t index(int owner, int half) const { return half == 0 ? owner : 2 * cp - 1 - owner; }
};

// What travels around the ring: K, V and the key-side masks of one rank's two chunks.
struct KvBlock {
  Tensor k, v, padding, segments;
  std::vector<Tensor> list() const {
    std::vector<Tensor> out{k, v};
    if (padding.defined()) out.push_back(padding);
    if (segments.defined()) out.push_back(segments);
    return out;
  }
};

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

KvBlock like(const KvBlock& b) {
  KvBlock o{like(b.k), like(b.v), Tensor(), Tensor()};
  if (b.padding.defined()) o.padding = like(b.padding);
  if (b.segments.defined()) o.segments = like(b.segments);
  return o;
}

// Sends `out` to the next rank and receives the previous rank's into `in` (same shapes).
std::unique_ptr<Work> shift(ProcessGroup& g, const std::vector<Tensor>& out,
                            const std::vector<Tensor>& in, bool async) {
  const int next = (g.rank() + 1) % g.size(), prev = (g.rank() + g.size() - 1) % g.size();
  std::vector<P2POp> ops;
  for (const Tensor& t : out) ops.push_back({P2POp::Kind::kSend, t, next});
  for (const Tensor& t : in) ops.push_back({P2POp::Kind::kRecv, t, prev});
  return g.send_recv(ops, async);
}

// Rows [s0, s0 + n) of a contiguous [B, S, ...] tensor, as a new contiguous [B, n, ...] tensor.
Tensor take_rows(const Tensor& t, int64_t s0, int64_t n) {
  Shape shape = t.shape();
  const int64_t row = t.numel() / (shape[0] * shape[1]);
  shape[1] = n;
  Tensor out = Tensor::empty(shape, t.dtype(), t.device());
  Copy2dParams p;
  p.src = static_cast<const char*>(t.raw()) + s0 * row * dtype_size(t.dtype());
  p.dst = out.raw();
  p.rows = t.size(0);
  p.cols = n * row;
  p.ld_src = t.size(1) * row;
  p.ld_dst = p.cols;
  p.dtype = t.dtype();
  p.device = t.device();
  if (p.rows > 0 && p.cols > 0) copy_2d(p);
  return out;
}

// full[:, s0 : s0 + n] = part (contiguous [B, n, ...]) converted to full's dtype.
void put_rows(Tensor& full, int64_t s0, const Tensor& part) {
  Tensor src = part;
  if (part.dtype() != full.dtype()) {
    src = Tensor::empty(part.shape(), full.dtype(), part.device());
    cast_into(src, part);
  }
  const int64_t n = part.size(1), row = part.numel() / (part.size(0) * n);
  Copy2dParams p;
  p.src = src.raw();
  p.dst = static_cast<char*>(full.raw()) + s0 * row * dtype_size(full.dtype());
  p.rows = part.size(0);
  p.cols = n * row;
  p.ld_src = p.cols;
  p.ld_dst = full.size(1) * row;
  p.dtype = full.dtype();
  p.device = full.device();
  if (p.rows > 0 && p.cols > 0) copy_2d(p);
}

// acc (f32) += x (any float dtype), same element count.
void acc_into(Tensor& acc, const Tensor& x) {
  Tensor src = x;
  if (x.dtype() != DType::kF32) {
    src = Tensor::empty(x.shape(), DType::kF32, x.device());
    cast_into(src, x);
  }
  AxpyParams p;
  p.x = src.raw();
  p.y = acc.raw();
  p.n = acc.numel();
  p.dtype = DType::kF32;
  p.device = acc.device();
  if (p.n > 0) axpy(p);
}

Tensor filled(const Shape& shape, float value, Device device) {
  Tensor t = Tensor::empty(shape, DType::kF32, device);
  FillParams p;
  p.x = t.raw();
  p.value = value;
  p.n = t.numel();
  p.device = device;
  if (p.n > 0) fill(p);
  return t;
}

// The kernel options of query chunk qi against key chunk ki; false when no key is visible.
bool pair_options(const Chunks& ch, int64_t qi, int64_t ki, const RingAttnOptions& o, bool padding,
                  SdpaOptions& so) {
  const int64_t c = ch.c, w = o.window;
  so.scale = o.scale;
  so.backend = o.backend;
  so.report = o.report;
  so.window = 0;
  so.q_offset = 0;
  bool causal = false;
  if (o.causal) {
    if (ki > qi) return false;
    // The last key is at or before the first query's window start: nothing visible.
    if (w > 0 && ki * c + c - 1 <= qi * c - w) return false;
    // Fully visible: an earlier chunk whose first key is inside the last query's window.
    const bool full = ki < qi && (w == 0 || ki * c > qi * c + c - 1 - w);
    if (!full) {
      causal = true;
      so.window = w;
      so.q_offset = (qi - ki) * c;
    }
  }
  so.mask = padding ? (causal ? AttnMask::kPaddingCausal : AttnMask::kPadding)
                    : (causal ? AttnMask::kCausal : AttnMask::kNoMask);
  return true;
}

// The masks of the pair (key chunk `kh` of `kv`, query chunk `qh` of this rank).
void pair_masks(const KvBlock& kv, int kh, const Tensor& q_segments, int qh, int64_t c,
                SdpaOptions& so) {
  if (kv.padding.defined()) so.key_padding = take_rows(kv.padding, kh * c, c);
  if (kv.segments.defined()) {
    so.segment_ids = take_rows(kv.segments, kh * c, c);
    so.q_segment_ids = take_rows(q_segments, qh * c, c);
  }
}

void log_once(const ProcessGroup& g, const char* layer) {
  static std::once_flag once;
  std::call_once(once, [&] {
    if (g.world_ranks()[static_cast<size_t>(g.rank())] == 0)  // once per job
      std::fprintf(stderr,
                   "[graft] %s: ring attention over cp = %d (%s), 2·cp chunks load-balanced; "
                   "each chunk pair through the device's attention kernels\n",
                   layer, g.size(), g.backend().c_str());
  });
}

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

}  // namespace

Tensor ring_attention_forward(ProcessGroup& g, const Tensor& q_in, const Tensor& k_in,
                              const Tensor& v_in, const Tensor& key_padding,
                              const Tensor& segment_ids, const RingAttnOptions& opt,
                              std::shared_ptr<RingAttnSaved>* save) {
  GRAFT_CHECK(q_in.ndim() == 4 && k_in.ndim() == 4 && v_in.shape() == k_in.shape() &&
                  k_in.size(0) == q_in.size(0) && k_in.size(1) == q_in.size(1),
              opt.layer, ": ring attention q ", q_in.str(), " k ", k_in.str(), " v ", v_in.str());
  const int64_t B = q_in.size(0), L = q_in.size(1), Hq = q_in.size(2), D = q_in.size(3);
  GRAFT_INPUT_CHECK(L % 2 == 0, opt.layer,
                    ": context parallelism needs an even number of rows "
                    "per rank (two chunks), got ",
                    L);
  GRAFT_INPUT_CHECK(opt.causal || opt.window == 0, opt.layer,
                    ": a sliding window without a causal mask under context parallelism");
  log_once(g, opt.layer);
  const Chunks ch{g.size(), g.rank(), L / 2};
  const int64_t c = ch.c;
  Tensor q = contiguous(q_in);
  KvBlock cur{contiguous(k_in), contiguous(v_in), Tensor(), Tensor()};
  if (key_padding.defined()) cur.padding = contiguous(key_padding);
  if (segment_ids.defined()) cur.segments = contiguous(segment_ids);
  const KvBlock own = cur;
  Tensor acc[2], lse[2];
  for (int a = 0; a < 2; ++a) {
    acc[a] = Tensor::zeros({B, c, Hq, D}, DType::kF32, q.device());
    lse[a] = filled({B, Hq, c}, -std::numeric_limits<float>::infinity(), q.device());
  }
  for (int t = 0; t < ch.cp; ++t) {
    const int src = (ch.rank - t + ch.cp) % ch.cp;
    KvBlock next;
    std::unique_ptr<Work> work;
    if (t + 1 < ch.cp) {
      next = like(cur);
      work = shift(g, cur.list(), next.list(), /*async=*/true);
    }
    for (int a = 0; a < 2; ++a)
      for (int h = 0; h < 2; ++h) {
        SdpaOptions so;
        if (!pair_options(ch, ch.index(ch.rank, a), ch.index(src, h), opt, cur.padding.defined(),
                          so))
          continue;
        pair_masks(cur, h, own.segments, a, c, so);
        Tensor part = Tensor::empty({B, c, Hq, D}, q.dtype(), q.device());
        SdpaSaved ps;
        sdpa_forward(q.slice(1, a * c, c), cur.k.slice(1, h * c, c), cur.v.slice(1, h * c, c), so,
                     part, &ps);
        AttnMergeParams mp;
        mp.part = part.raw();
        mp.part_lse = static_cast<const float*>(ps.lse.raw());
        mp.acc = static_cast<float*>(acc[a].raw());
        mp.acc_lse = static_cast<float*>(lse[a].raw());
        mp.batch = B;
        mp.seq_part = mp.seq_acc = c;
        mp.heads = Hq;
        mp.head_dim = D;
        mp.dtype = q.dtype();
        mp.device = q.device();
        attn_merge(mp);
      }
    if (work) {
      work->wait();
      cur = next;
    }
  }
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  for (int a = 0; a < 2; ++a) put_rows(out, a * c, acc[a]);
  if (save) {
    auto s = std::make_shared<RingAttnSaved>();
    s->group = &g;
    s->q = q;
    s->k = own.k;
    s->v = own.v;
    s->out = out;
    s->lse[0] = lse[0];
    s->lse[1] = lse[1];
    s->key_padding = own.padding;
    s->segments = own.segments;
    s->opt = opt;
    *save = std::move(s);
  }
  return out;
}

void ring_attention_backward(const Tensor& dout_in, const RingAttnSaved& s, Tensor& dq, Tensor& dk,
                             Tensor& dv) {
  ProcessGroup& g = *s.group;
  const int64_t B = s.q.size(0), L = s.q.size(1), Hq = s.q.size(2), D = s.q.size(3);
  const int64_t Hkv = s.k.size(2);
  const Chunks ch{g.size(), g.rank(), L / 2};
  const int64_t c = ch.c;
  const Device dev = s.q.device();
  Tensor dout = contiguous(dout_in);
  GRAFT_CHECK(dout.shape() == s.q.shape(), s.opt.layer, ": ring attention dout ", dout.str());
  KvBlock cur{s.k, s.v, s.key_padding, s.segments};
  Tensor dq_acc[2];
  for (auto& t : dq_acc) t = Tensor::zeros({B, c, Hq, D}, DType::kF32, dev);
  // The traveling f32 gradients of the held block: dk of its chunks 0, 1, then dv of 0, 1.
  std::vector<Tensor> grads(4);
  for (auto& t : grads) t = Tensor::zeros({B, c, Hkv, D}, DType::kF32, dev);
  std::unique_ptr<Work> grads_in_flight;
  std::vector<Tensor> sending;  // the gradients in flight, alive until their send completed
  for (int t = 0; t < ch.cp; ++t) {
    const int src = (ch.rank - t + ch.cp) % ch.cp;
    KvBlock next;
    std::unique_ptr<Work> work;
    if (t + 1 < ch.cp) {
      next = like(cur);
      work = shift(g, cur.list(), next.list(), /*async=*/true);
    }
    struct PairGrads {
      int a, h;
      Tensor dq, dk, dv;
    };
    std::vector<PairGrads> done;
    for (int a = 0; a < 2; ++a)
      for (int h = 0; h < 2; ++h) {
        SdpaOptions so;
        if (!pair_options(ch, ch.index(ch.rank, a), ch.index(src, h), s.opt, cur.padding.defined(),
                          so))
          continue;
        pair_masks(cur, h, s.segments, a, c, so);
        SdpaSaved ps{s.q.slice(1, a * c, c),
                     cur.k.slice(1, h * c, c),
                     cur.v.slice(1, h * c, c),
                     s.out.slice(1, a * c, c),
                     s.lse[a],
                     so};
        PairGrads pg{a, h, Tensor::empty({B, c, Hq, D}, s.q.dtype(), dev),
                     Tensor::empty({B, c, Hkv, D}, s.k.dtype(), dev),
                     Tensor::empty({B, c, Hkv, D}, s.v.dtype(), dev)};
        sdpa_backward(dout.slice(1, a * c, c), ps, pg.dq, pg.dk, pg.dv);
        done.push_back(std::move(pg));
      }
    // The held block's gradients arrive from the previous rank while the kernels above run.
    if (grads_in_flight) grads_in_flight->wait();
    for (PairGrads& pg : done) {
      acc_into(dq_acc[pg.a], pg.dq);
      acc_into(grads[pg.h], pg.dk);
      acc_into(grads[2 + pg.h], pg.dv);
    }
    sending = std::move(grads);
    grads.assign(4, Tensor());
    for (size_t i = 0; i < 4; ++i) grads[i] = like(sending[i]);
    grads_in_flight = shift(g, sending, grads, /*async=*/true);
    if (work) {
      work->wait();
      cur = next;
    }
  }
  grads_in_flight->wait();  // the last shift brings each owner its block's dK/dV
  dq = Tensor::empty(s.q.shape(), s.q.dtype(), dev);
  dk = Tensor::empty(s.k.shape(), s.k.dtype(), dev);
  dv = Tensor::empty(s.v.shape(), s.v.dtype(), dev);
  for (int a = 0; a < 2; ++a) {
    put_rows(dq, a * c, dq_acc[a]);
    put_rows(dk, a * c, grads[a]);
    put_rows(dv, a * c, grads[2 + a]);
  }
}

}  // namespace graft::layers
