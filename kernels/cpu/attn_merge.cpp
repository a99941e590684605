// CPU log-sum-exp merge of partial attention results (math: kernels/attn_merge.h).
#include "kernels/attn_merge.h"

#include <algorithm>
#include <cmath>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {

void attn_merge(const AttnMergeParams& p) {
  detail::check_cpu(p.device, "attn_merge");
  detail::check_float(p.dtype, "attn_merge", "part");
  GRAFT_CHECK(p.row0 >= 0 && p.row0 + p.seq_part <= p.seq_acc, "attn_merge: rows ", p.row0, " + ",
              p.seq_part, " exceed the accumulator's ", p.seq_acc);
  const int64_t H = p.heads, D = p.head_dim;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t s = 0; s < p.seq_part; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const double lp = p.part_lse[(b * H + h) * p.seq_part + s];
        float& la = p.acc_lse[(b * H + h) * p.seq_acc + p.row0 + s];
        if (std::isinf(lp) && lp < 0) continue;  // nothing visible in this part
        const double lo = la;
        const double m = std::max(lo, lp);
        const double l = m + std::log(std::exp(lo - m) + std::exp(lp - m));
        const double wo = std::exp(lo - l), wp = std::exp(lp - l);
        const int64_t off = ((b * p.seq_part + s) * H + h) * D;
        float* a = p.acc + ((b * p.seq_acc + p.row0 + s) * H + h) * D;
        for (int64_t d = 0; d < D; ++d)
          a[d] = static_cast<float>(wo * a[d] + wp * detail::load(p.part, p.dtype, off + d));
        la = static_cast<float>(l);
      }
}

}  // namespace graft::cpu
