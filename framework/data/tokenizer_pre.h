// tokenizer.json "pre_tokenizer": splits normalized text into the words the model encodes one by
// one (Hugging Face pre_tokenizers/*.rs).
//
//   Sequence {pretokenizers}    each in turn, over every piece
//   Split {pattern, behavior, invert}   pattern {"String"|"Regex"} (PCRE2, Unicode properties);
//       behavior Removed | Isolated | MergedWithPrevious | MergedWithNext | Contiguous; invert
//       swaps matches and the text between them
//   ByteLevel {add_prefix_space, use_regex}   " " prepended to each piece that lacks one; the
//       GPT-2 regex (Isolated) when use_regex; then every byte -> its GPT-2 alphabet character
//   Metaspace {replacement, prepend_scheme always|first|never (or legacy add_prefix_space),
//       split}   " " -> replacement; replacement prepended (first: only to the piece that starts
//       the input); split keeps each replacement with the text after it (MergedWithNext)
//   Digits {individual_digits}   \p{N} isolated, one by one or in runs
// Anything else is an InputError naming the file and the key.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace graft::tok {

// A stretch of text on its way to the model. at_start: it begins at offset 0 of the input.
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites `pieces` in place; empty pieces are dropped.
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits p.text at `matches` ([begin, end) byte spans, in order) as HF NormalizedString::split
// does; appends the non-empty results to out.
void split_piece(const Piece& p, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<Piece>& out);

// j: the "pre_tokenizer" object (null -> nullptr); file and key name it in errors.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& file,
                                                 const std::string& key);

}  // namespace graft::tok
