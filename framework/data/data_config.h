// The data section of a recipe. Exactly one of text, sources, prepared.
//
//   data:
//     text: [/usr/share/common-licenses/*]  # file globs, each a type-text source of weight 1
//     sources:                              # or: a mixture of sources
//       - path: corpus/*.jsonl.zst          #   a file or glob: .txt (whole file = 1 document),
//                                           #   .jsonl / .ndjson, each optionally .gz or .zst;
//                                           #   .parquet is refused (not built)
//         type: text                        #   text | sft (prompt/completion or messages)
//         field: text                       #   the JSONL string field of a text source
//         weight: 1                         #   mixture weight > 0 (below)
//     prepared: DIR                         # or: shards written by `graft data prepare`
//     tokenizer: byte                       # byte | PATH/tokenizer.json; with `prepared` it must
//                                           # be the one the shards were made with (checked by
//                                           # the content hash in meta.json)
//     cache_dir: ""                         # "" = $XDG_CACHE_HOME/graft/data or ~/.cache/...
//     seq_len: 256                          # tokens per training sequence
//     seed: 1234                            # sampling order
//     validation: {fraction: 0.05}          # or {path: DIR | GLOB}; see validation.h
//     document_mask: false                  # true: attention stays within each packed document
//                                           # and positions restart at 0 per document
//
// Documents are packed as [BOS] tokens EOS (BOS when the tokenizer has one) into one stream, cut
// into windows of seq_len inputs + 1 (sampler.h): every token is a target once per epoch except
// a document's first token (BOS, or the first text token without a BOS), whose input would be
// the previous document's EOS. Without document_mask, attention still crosses documents.
//
// Mixture weight (applied when preparing, so the sampler stays a pure function of the stream):
// a source of weight w contributes w times its own documents: floor(w) full passes over its
// files, plus, for a fractional part f, each document once more with probability f (a hash of
// the source index and the document's index: deterministic). So source i's share of the tokens
// is w_i · T_i / sum_j w_j · T_j (T_i: its tokens); weight 0.5 halves a source, 3 repeats it.
//
// SFT (type: sft, see sources.h for the template): loss only on completion tokens (and the final
// EOS): the shards carry a loss mask, the sampler sets other targets to -100, and the
// cross-entropy kernel skips them. Pair with document_mask: true so packed examples never see
// each other.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/data/sources.h"
#include "framework/data/validation.h"

namespace graft {

class RecipeNode;

struct DataConfig {
  std::vector<std::string> text;    // glob patterns (expanded, sorted, in `files`)
  std::vector<std::string> files;   // every input file of every source
  std::vector<DataSource> sources;  // `text` becomes one source per pattern
  std::string prepared;
  std::string tokenizer = "byte";
  std::string cache_dir;
  int64_t seq_len = 256;
  int64_t seed = 1234;
  bool document_mask = false;
  ValidationConfig validation;  // absent from the resolved recipe unless given
};

// Reads and validates the section (every pattern must match a file; `prepared` must hold
// meta.json; exactly one of text / sources / prepared; weights > 0; types text | sft).
DataConfig parse_data_config(RecipeNode& n);

// Expands a glob; sorted. Empty when nothing matches.
std::vector<std::string> expand_glob(const std::string& pattern);

}  // namespace graft
