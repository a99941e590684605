// The FP8 recipe (precision.fp8 in a training recipe; TE's DelayedScaling / Float8CurrentScaling
// and fp8_model_init). Parsed and validated by framework/recipe/fp8_recipe.cpp; semantics in
// docs/fp8.md and layers/te/fp8_state.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/dtype.h"

namespace graft::te {

enum class Fp8Recipe { kNone, kDelayed, kCurrent };
// kHybrid: forward tensors (input, weight) E4M3, gradients E5M2. kE4M3: every tensor E4M3.
enum class Fp8Format { kHybrid, kE4M3 };
// The amax a delayed scale is computed from: max over the history window, or the latest entry.
enum class AmaxAlgo { kMax, kMostRecent };

struct Fp8Config {
  Fp8Recipe recipe = Fp8Recipe::kNone;
  Fp8Format format = Fp8Format::kHybrid;
  int64_t margin = 0;               // scale = (fp8_max / amax) / 2^margin (delayed only)
  int64_t amax_history_len = 1024;  // delayed only
  AmaxAlgo amax_compute_algo = AmaxAlgo::kMax;
  std::vector<int64_t> bf16_layers;  // decoder layer indices kept out of FP8 (sorted, unique)
  bool fp8_weights = false;

  bool enabled() const { return recipe != Fp8Recipe::kNone; }
  DType forward_dtype() const { return DType::kF8E4M3; }
  DType backward_dtype() const {
    return format == Fp8Format::kHybrid ? DType::kF8E5M2 : DType::kF8E4M3;
  }
};

const char* fp8_recipe_name(Fp8Recipe r);  // "none", "delayed", "current"

}  // namespace graft::te
