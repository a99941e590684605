// tokenizer.json "added_tokens": literal strings split out of the text before the model sees it
// (Hugging Face tokenizer/added_vocabulary.rs). Never merged; each encodes to its own id.
//
// Tokens with normalized = false match the raw text; the others match the normalized text, by
// their content passed through the normalizer (so under Llama 2's Prepend("▁") a normalized
// token "x" matches "▁x"). Matching is leftmost-longest; a match that fails single_word (a word
// character on either side) is skipped; lstrip / rstrip take the whitespace to the left / right
// into the token. special only matters for decoding (the HF default skips it; graft keeps it).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "framework/data/tokenizer_normalizer.h"

namespace graft::tok {

struct AddedToken {
  std::string content;
  std::string pattern;  // what it matches: content, or content normalized
  int64_t id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

class AddedTokens {
 public:
  // j: the "added_tokens" array (null -> none).
  void load(const nlohmann::json& j, const std::string& file, const Normalizer* normalizer);

  // [begin, end) spans of text covering it all: id >= 0 for an added token, -1 for text.
  struct Span {
    size_t begin, end;
    int64_t id;
  };
  // normalized: match the tokens with normalized = true (else those with false).
  std::vector<Span> split(std::string_view text, bool normalized) const;
  // The token of id, or nullptr.
  const AddedToken* find(int64_t id) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // Per (normalized, first byte): indices into tokens_, longest pattern first.
  std::array<std::vector<size_t>, 256> by_first_[2];
};

}  // namespace graft::tok
