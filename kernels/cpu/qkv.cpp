// CPU split/merge of a fused qkv buffer (kernels/qkv.h): row by row, one memcpy per head block.
#include "kernels/qkv.h"

#include <cstring>

#include "framework/core/error.h"

namespace graft::cpu {

void qkv_split(const QkvSplitParams& p) {
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

}  // namespace graft::cpu
