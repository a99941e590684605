// Held-out validation data: the data.validation section of a recipe.
//
//   data:
//     validation:
//       fraction: 0.05     # hold out this fraction of the training stream's windows, or
//       path: DIR | GLOB   # a prepared folder (same tokenizer) or raw text globs (tokenized with
//                          # the training data's tokenizer into the same cache)
// Exactly one of the two. Absent = no validation data (and no eval).
//
// fraction F: the stream is cut at offset 0 into n = floor(total / seq_len) windows; window w is
// held out when floor((w + 1) · F) > floor(w · F), which spreads the floor(n · F) held-out
// windows evenly over the stream (every document region is represented). The sampler never draws
// a token of a held-out window (SamplerConfig::exclude): it samples the concatenation of the rest.
// path: the validation dataset is cut the same way and every window is a validation window.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace graft {

class RecipeNode;

struct ValidationConfig {
  double fraction = 0;             // (0, 1); 0 = not used
  std::string path;                // "" = not used
  std::vector<std::string> files;  // `path` as text globs: the expansion (empty for a folder)
  bool enabled() const { return fraction > 0 || !path.empty(); }
  bool prepared() const { return !path.empty() && files.empty(); }
};

// Reads and validates data.validation (the child node).
ValidationConfig parse_validation_config(RecipeNode& n);

// Token offsets of the held-out windows of a stream of `total` tokens (see above), ascending.
std::vector<int64_t> held_out_windows(int64_t total, int64_t seq_len, double fraction);
// The same windows as token ranges [begin, end), adjacent ones merged (for SamplerConfig).
std::vector<std::pair<int64_t, int64_t>> held_out_ranges(int64_t total, int64_t seq_len,
                                                         double fraction);

}  // namespace graft
