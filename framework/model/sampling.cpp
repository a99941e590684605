#include "framework/model/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "framework/core/error.h"

namespace graft {

TokenSampler::TokenSampler(const GenerateOptions& opt) : opt_(opt), rng_(opt.seed) {
  GRAFT_INPUT_CHECK(opt.temperature >= 0, "generate: temperature = ", opt.temperature,
                    ", expected >= 0");
  GRAFT_INPUT_CHECK(opt.top_k >= 0, "generate: top_k = ", opt.top_k, ", expected >= 0");
  GRAFT_INPUT_CHECK(opt.top_p > 0 && opt.top_p <= 1, "generate: top_p = ", opt.top_p,
                    ", expected in (0, 1]");
}

int64_t TokenSampler::pick(const std::vector<float>& logits) {
  GRAFT_CHECK(!logits.empty(), "sampler: no logits");
  const int64_t V = static_cast<int64_t>(logits.size());
  if (opt_.temperature == 0.0) {
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  }
  std::vector<double> z(logits.begin(), logits.end());
  for (double& x : z) x /= opt_.temperature;
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[a] > z[b]; });
  std::vector<bool> keep(static_cast<size_t>(V), true);
  if (opt_.top_k > 0 && opt_.top_k < V) {
    const double kth = z[order[opt_.top_k - 1]];
    for (int64_t i = 0; i < V; ++i) keep[i] = z[i] >= kth;
  }
  const double zmax = z[order[0]];
  double total = 0;
  for (int64_t i = 0; i < V; ++i)
    if (keep[i]) total += std::exp(z[i] - zmax);
  if (opt_.top_p < 1.0) {
    double cum = 0;
    bool reached = false;
    for (int64_t idx : order) {
      if (!keep[idx]) continue;
      if (reached) {
        keep[idx] = false;
        continue;
      }
      cum += std::exp(z[idx] - zmax) / total;
      reached = cum >= opt_.top_p;
    }
  }
  std::vector<double> w(static_cast<size_t>(V), 0.0);
  for (int64_t i = 0; i < V; ++i)
    if (keep[i]) w[i] = std::exp(z[i] - zmax);
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  // One uniform draw mapped through the cumulative weights (portable across standard libraries,
  // unlike std::discrete_distribution).
  const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0) * sum;
  double acc = 0;
  int64_t last = order[0];
  for (int64_t i = 0; i < V; ++i) {
    if (w[i] == 0.0) continue;
    acc += w[i];
    last = i;
    if (u < acc) return i;
  }
  return last;
}

}  // namespace graft
