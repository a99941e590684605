// CPU split/merge of a fused qkv buffer (kernels/qkv.h): row by row, one memcpy per head block.
// With RoPE: the split followed by cpu::rope_fwd on q and k, or cpu::rope_bwd on copies of dq and
// dk followed by the merge (the reference the fused CUDA pass is tested against).
#include "kernels/qkv.h"

#include <cstring>
#include <vector>

#include "framework/core/error.h"
#include "kernels/rope.h"

namespace graft::cpu {
namespace {

void copy_split(const QkvSplitParams& p);

// Rotates x [rows, heads, head_dim] (contiguous f32) in place with p.rope.
void rotate(const QkvSplitParams& p, void* x, int64_t heads, bool backward) {
  RopeParams r;
  r.x = x;
  r.cos = p.rope.cos;
  r.sin = p.rope.sin;
  r.positions = p.rope.positions;
  r.batch = p.rows / p.rope.seq;
  r.seq = p.rope.seq;
  r.heads = heads;
  r.head_dim = p.head_dim;
  r.rotary_dim = p.rope.rotary_dim;
  r.max_positions = p.rope.max_positions;
  r.pos_stride_b = p.rope.pos_stride_b;
  r.dtype = p.dtype;
  r.device = p.device;
  if (backward)
    ::graft::cpu::rope_bwd(r);
  else
    ::graft::cpu::rope_fwd(r);
}

}  // namespace

void qkv_split(const QkvSplitParams& p) {
  if (!p.rope.cos) return copy_split(p);
  const char* name = p.merge ? "qkv_merge_rope" : "qkv_split_rope";
  GRAFT_CHECK(p.rope.seq > 0 && p.rows % p.rope.seq == 0, name, ": seq = ", p.rope.seq,
              " does not divide rows = ", p.rows);
  GRAFT_CHECK(p.dtype == DType::kF32, name, ": the CPU path needs f32, got ", dtype_name(p.dtype));
  if (!p.merge) {
    copy_split(p);
    rotate(p, p.q, p.heads_q, false);
    rotate(p, p.k, p.heads_kv, false);
    return;
  }
  const size_t nq = static_cast<size_t>(p.rows * p.heads_q * p.head_dim);
  const size_t nk = static_cast<size_t>(p.rows * p.heads_kv * p.head_dim);
  std::vector<float> dq(static_cast<const float*>(p.q), static_cast<const float*>(p.q) + nq);
  std::vector<float> dk(static_cast<const float*>(p.k), static_cast<const float*>(p.k) + nk);
  rotate(p, dq.data(), p.heads_q, true);
  rotate(p, dk.data(), p.heads_kv, true);
  QkvSplitParams m = p;
  m.q = dq.data();
  m.k = dk.data();
  copy_split(m);
}

namespace {

void copy_split(const QkvSplitParams& p) {
  GRAFT_CHECK(p.device.is_cpu(), "qkv_split (cpu) called for ", p.device.str());
  GRAFT_CHECK(p.heads_kv > 0 && p.heads_q % p.heads_kv == 0 && p.head_dim > 0 && p.rows >= 0,
              "qkv_split: heads_q = ", p.heads_q, ", heads_kv = ", p.heads_kv,
              ", head_dim = ", p.head_dim);
  const int64_t n = p.heads_q / p.heads_kv, d = p.head_dim, w = (p.heads_q + 2 * p.heads_kv) * d;
  const int64_t ld = p.ld ? p.ld : w;
  GRAFT_CHECK(ld >= w, "qkv_split: ld = ", ld, " < width ", w);
  const size_t es = dtype_size(p.dtype);
  auto* qkv = static_cast<char*>(p.qkv);
  auto* q = static_cast<char*>(p.q);
  auto* k = static_cast<char*>(p.k);
  auto* v = static_cast<char*>(p.v);
  for (int64_t r = 0; r < p.rows; ++r) {
    char* row = qkv + r * ld * es;
    for (int64_t g = 0; g < p.heads_kv; ++g) {
      const int64_t qc = p.grouped ? g * (n + 2) * d : g * n * d;
      const int64_t kc = p.grouped ? qc + n * d : (p.heads_q + g) * d;
      const int64_t vc = p.grouped ? qc + (n + 1) * d : (p.heads_q + p.heads_kv + g) * d;
      char* qd = q + (r * p.heads_q * d + g * n * d) * es;
      char* kd = k + (r * p.heads_kv * d + g * d) * es;
      char* vd = v + (r * p.heads_kv * d + g * d) * es;
      if (p.merge) {
        std::memcpy(row + qc * es, qd, n * d * es);
        std::memcpy(row + kc * es, kd, d * es);
        std::memcpy(row + vc * es, vd, d * es);
      } else {
        std::memcpy(qd, row + qc * es, n * d * es);
        std::memcpy(kd, row + kc * es, d * es);
        std::memcpy(vd, row + vc * es, d * es);
      }
    }
  }
}

}  // namespace
}  // namespace graft::cpu
