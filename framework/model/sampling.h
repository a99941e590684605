// Next-token choice for generation, on the host (the logits of one position are small).
//
// Greedy (temperature 0): the first index of the largest logit (torch.argmax).
// Sampling, in transformers' order: logits / temperature; top-k keeps the k largest (ties at the
// k-th value kept); top-p keeps the smallest set of most probable tokens whose probability sum
// reaches top_p (at least one); then one draw from the renormalised softmax with a seeded
// mt19937_64, so a seed reproduces a sequence exactly.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "framework/model/causal_lm.h"

namespace graft {

class TokenSampler {
 public:
  // InputError for temperature < 0, top_k < 0 or top_p outside (0, 1].
  explicit TokenSampler(const GenerateOptions& opt);
  int64_t pick(const std::vector<float>& logits);

 private:
  GenerateOptions opt_;
  std::mt19937_64 rng_;
};

}  // namespace graft
