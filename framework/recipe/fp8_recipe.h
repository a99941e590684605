// precision.fp8 of a recipe:
//
//   precision:
//     fp8:
//       recipe: none            # none | delayed | current
//       format: hybrid          # hybrid (E4M3 forward, E5M2 gradients) | e4m3
//       margin: 0               # delayed: scale = (fp8_max / amax) / 2^margin; 0..32
//       amax_history_len: 1024  # delayed: 1..65536
//       amax_compute_algo: max  # delayed: max | most_recent
//       bf16_layers: []         # decoder layers kept out of FP8: first, last or an index
//       fp8_weights: false      # true: no bf16 copy of the FP8 GEMM weights (docs/fp8.md)
//
// Every key is checked: an unknown key, value or an out-of-range number is an InputError naming
// the file and key. Keys that only the delayed recipe reads are rejected at a non-default value
// under current scaling (never silently ignored). Semantics: docs/fp8.md.
#pragma once

#include <cstdint>

#include "layers/te/fp8_config.h"

namespace graft {

class RecipeNode;

// `num_layers`: the model's decoder layer count (bf16_layers entries are checked against it).
te::Fp8Config parse_fp8_config(RecipeNode& n, int64_t num_layers);

}  // namespace graft
