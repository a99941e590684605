// The data section of a recipe.
//
//   data:
//     text: [/usr/share/common-licenses/*]  # raw text globs; each file is one document,
//                                          # tokenized into the cache on first use
//     prepared: DIR                        # or: shards written by `graft data prepare`
//     tokenizer: byte                      # byte | PATH/tokenizer.json (for `text`)
//     cache_dir: ""                        # "" = $XDG_CACHE_HOME/graft/data or ~/.cache/graft/data
//     seq_len: 256                         # tokens per training sequence
//     seed: 1234                           # sampling order
//     validation: {fraction: 0.05}         # or {path: DIR | GLOB}; see validation.h
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/data/validation.h"

namespace graft {

class RecipeNode;

struct DataConfig {
  std::vector<std::string> text;   // glob patterns (expanded, sorted, in `files`)
  std::vector<std::string> files;  // the expansion of `text`
  std::string prepared;
  std::string tokenizer = "byte";
  std::string cache_dir;
  int64_t seq_len = 256;
  int64_t seed = 1234;
  ValidationConfig validation;  // absent from the resolved recipe unless given
};

// Reads and validates the section (every text pattern must match a file; `prepared` must hold
// meta.json; exactly one of text / prepared).
DataConfig parse_data_config(RecipeNode& n);

// Expands a glob; sorted. Empty when nothing matches.
std::vector<std::string> expand_glob(const std::string& pattern);

}  // namespace graft
