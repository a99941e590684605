// CPU softmax cross-entropy with ignore_index and mean/sum reduction: f32 exp, f64 row sums.
// Math, chunking and accumulate rules: kernels/cross_entropy.h.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

void check(const Device& dev, DType dtype, int64_t n, int64_t vocab, int64_t ld, const void* logits,
           const int64_t* targets, const char* name) {
  detail::check_cpu(dev, name);
  detail::check_f32(dtype, name, "logits");
  GRAFT_CHECK(n >= 0 && vocab > 0 && (ld == 0 || ld >= vocab), name, ": bad sizes n = ", n,
              ", vocab = ", vocab, ", ld = ", ld);
  GRAFT_CHECK(n == 0 || (logits && targets), name, ": null logits or targets");
}

// Validates the targets; returns the number of non-ignored ones.
int64_t count_valid(const int64_t* targets, int64_t n, int64_t vocab, int64_t ignore,
                    const char* name) {
  int64_t valid = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] == ignore) continue;
    GRAFT_INPUT_CHECK(targets[r] >= 0 && targets[r] < vocab, name, ": target ", targets[r],
                      " at row ", r, " is outside the vocabulary [0, ", vocab,
                      ") and is not ignore_index ", ignore);
    ++valid;
  }
  return valid;
}

double divisor(Reduction red, int64_t num_valid, int64_t counted) {
  if (red == Reduction::kSum) return 1.0;
  return static_cast<double>(num_valid < 0 ? counted : num_valid);
}

}  // namespace

void cross_entropy_fwd(const XentFwdParams& p) {
  check(p.device, p.dtype, p.n, p.vocab, p.ld, p.logits, p.targets, "cross_entropy_fwd");
  GRAFT_CHECK(p.loss, "cross_entropy_fwd: null loss");
  const int64_t valid = count_valid(p.targets, p.n, p.vocab, p.ignore_index, "cross_entropy_fwd");
  const int64_t ld = p.ld ? p.ld : p.vocab;
  const auto* logits = static_cast<const float*>(p.logits);
  double total = 0.0;
  for (int64_t r = 0; r < p.n; ++r) {
    const float* lr = logits + r * ld;
    const float mx = *std::max_element(lr, lr + p.vocab);
    double sum = 0.0;  // f32 exp (1 ulp) of each term, f64 sum: the vocab loop stays cheap
    for (int64_t c = 0; c < p.vocab; ++c) sum += std::exp(lr[c] - mx);
    const double lse = mx + std::log(sum);
    if (p.lse) p.lse[r] = static_cast<float>(lse);
    const int64_t t = p.targets[r];
    const double row = t == p.ignore_index ? 0.0 : lse - lr[t];
    if (p.row_loss) p.row_loss[r] = static_cast<float>(row);
    total += row;
  }
  const double d = divisor(p.reduction, p.num_valid_at ? *p.num_valid_at : p.num_valid, valid);
  const double loss = d == 0.0 ? 0.0 : total / d;
  *p.loss = static_cast<float>((p.accumulate ? static_cast<double>(*p.loss) : 0.0) + loss);
}

void cross_entropy_bwd(const XentBwdParams& p) {
  check(p.device, p.dtype, p.n, p.vocab, p.ld, p.logits, p.targets, "cross_entropy_bwd");
  GRAFT_CHECK(p.n == 0 || (p.lse && p.dlogits), "cross_entropy_bwd: null lse or dlogits");
  const int64_t valid = count_valid(p.targets, p.n, p.vocab, p.ignore_index, "cross_entropy_bwd");
  const int64_t ld = p.ld ? p.ld : p.vocab;
  const double d = divisor(p.reduction, p.num_valid_at ? *p.num_valid_at : p.num_valid, valid);
  const double g = d == 0.0 ? 0.0 : p.grad_scale / d;
  const auto* logits = static_cast<const float*>(p.logits);
  auto* dlogits = static_cast<float*>(p.dlogits);
  for (int64_t r = 0; r < p.n; ++r) {
    const float* lr = logits + r * ld;
    float* dr = dlogits + r * ld;
    const int64_t t = p.targets[r];
    if (t == p.ignore_index) {
      std::fill_n(dr, p.vocab, 0.0f);
      continue;
    }
    const float lse = p.lse[r];
    const float gf = static_cast<float>(g);
    for (int64_t c = 0; c < p.vocab; ++c)  // reads lr[c] before writing dr[c] (may alias)
      dr[c] = gf * std::exp(lr[c] - lse);
    dr[t] -= gf;
  }
}

void cross_entropy_fwd_bwd(const XentFwdBwdParams& p) {
  GRAFT_CHECK(p.device == p.fwd.device, "cross_entropy_fwd_bwd: device ", p.device.str(),
              " but fwd.device ", p.fwd.device.str());
  GRAFT_CHECK(!p.stream || p.stream == p.fwd.stream,
              "cross_entropy_fwd_bwd: stream differs from fwd.stream");
  std::vector<float> lse_tmp;
  XentFwdParams f = p.fwd;
  if (!f.lse) {
    lse_tmp.resize(static_cast<size_t>(f.n));
    f.lse = lse_tmp.data();
  }
  cpu::cross_entropy_fwd(f);
  cpu::cross_entropy_bwd(xent_bwd_params(p, f.lse));
}

void shift_labels(const ShiftLabelsParams& p) {
  GRAFT_CHECK(p.device.is_cpu(), "shift_labels (cpu) called for ", p.device.str());
  GRAFT_CHECK(p.batch >= 0 && p.seq >= 0 && (p.batch * p.seq == 0 || (p.labels && p.targets)),
              "shift_labels: bad sizes or null pointers");
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t* l = p.labels + b * p.seq;
    int64_t* t = p.targets + b * p.seq;
    for (int64_t s = 0; s + 1 < p.seq; ++s) t[s] = l[s + 1];
    if (p.seq > 0) t[p.seq - 1] = p.ignore_index;
  }
}

}  // namespace graft::cpu
