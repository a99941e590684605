// CPU vocab-parallel cross-entropy steps (math: kernels/vocab_parallel_xent.h): f32 exp, f64
// sums, like cpu/cross_entropy.cpp.
#include "kernels/vocab_parallel_xent.h"

#include <cmath>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

void check(const VocabXentParams& p, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_f32(p.dtype, name, "logits");
  GRAFT_CHECK(p.n >= 0 && p.vocab > 0 && p.vocab <= p.cols && (p.ld == 0 || p.ld >= p.cols) &&
                  p.vocab_start >= 0 && p.vocab_total > 0,
              name, ": bad sizes n = ", p.n, ", vocab = ", p.vocab, ", cols = ", p.cols,
              ", ld = ", p.ld, ", vocab_start = ", p.vocab_start,
              ", vocab_total = ", p.vocab_total);
}

int64_t ld_of(const VocabXentParams& p) { return p.ld ? p.ld : p.cols; }

// Whether row r counts; InputError for a target outside the vocabulary.
bool valid_target(const VocabXentParams& p, int64_t r, const char* name) {
  const int64_t t = p.targets[r];
  if (t == p.ignore_index) return false;
  GRAFT_INPUT_CHECK(t >= 0 && t < p.vocab_total, name, ": target ", t, " at row ", r,
                    " is outside the vocabulary [0, ", p.vocab_total, ") and is not ignore_index ",
                    p.ignore_index);
  return true;
}

double divisor(const VocabXentParams& p, const char* name) {
  if (p.num_valid >= 0) return static_cast<double>(p.num_valid);
  int64_t c = 0;
  for (int64_t r = 0; r < p.n; ++r) c += valid_target(p, r, name) ? 1 : 0;
  return static_cast<double>(c);
}

}  // namespace

void vocab_xent_max(const VocabXentParams& p) {
  check(p, "vocab_xent_max");
  const auto* x = static_cast<const float*>(p.logits);
  for (int64_t r = 0; r < p.n; ++r) {
    const float* row = x + r * ld_of(p);
    float m = row[0];
    for (int64_t c = 1; c < p.vocab; ++c) m = std::max(m, row[c]);
    p.row_max[r] = m;
    const int64_t local = p.targets[r] - p.vocab_start;
    const bool mine = valid_target(p, r, "vocab_xent_max") && local >= 0 && local < p.vocab;
    p.target_logit[r] = mine ? row[local] : 0.0f;
  }
}

void vocab_xent_sumexp(const VocabXentParams& p) {
  check(p, "vocab_xent_sumexp");
  const auto* x = static_cast<const float*>(p.logits);
  for (int64_t r = 0; r < p.n; ++r) {
    const float* row = x + r * ld_of(p);
    double s = 0.0;
    for (int64_t c = 0; c < p.vocab; ++c) s += std::exp(row[c] - p.row_max[r]);
    p.sum_exp[r] = static_cast<float>(s);
  }
}

void vocab_xent_finish(const VocabXentParams& p) {
  check(p, "vocab_xent_finish");
  double total = 0.0;
  for (int64_t r = 0; r < p.n; ++r) {
    const double lse = p.row_max[r] + std::log(static_cast<double>(p.sum_exp[r]));
    p.lse[r] = static_cast<float>(lse);
    if (valid_target(p, r, "vocab_xent_finish")) total += lse - p.target_logit[r];
  }
  const double d = divisor(p, "vocab_xent_finish");
  *p.loss = d == 0.0 ? 0.0f : static_cast<float>(total / d);
}

void vocab_xent_bwd(const VocabXentParams& p) {
  check(p, "vocab_xent_bwd");
  const double d = divisor(p, "vocab_xent_bwd");
  const double g = d == 0.0 ? 0.0 : p.grad_scale / d;
  const auto* x = static_cast<const float*>(p.logits);
  auto* dx = static_cast<float*>(p.dlogits);
  for (int64_t r = 0; r < p.n; ++r) {
    const float* row = x + r * ld_of(p);
    float* drow = dx + r * ld_of(p);
    const bool valid = valid_target(p, r, "vocab_xent_bwd");
    const int64_t local = p.targets[r] - p.vocab_start;
    for (int64_t c = 0; c < p.cols; ++c) {
      if (!valid || c >= p.vocab) {
        drow[c] = 0.0f;
        continue;
      }
      const double pc = std::exp(row[c] - p.lse[r]);
      drow[c] = static_cast<float>(g * (pc - (c == local ? 1.0 : 0.0)));
    }
  }
}

}  // namespace graft::cpu
