// Hugging Face tokenizer.json, byte-level BPE (the GPT-2 / Llama 3 / Qwen family).
//
// Read: model.type "BPE" with model.vocab {token: id} and model.merges (either "a b" strings or
// [a, b] pairs, rank = position), added_tokens [{id, content}], and a ByteLevel pre-tokenizer
// (alone or inside a Sequence with a Split). Encoding:
//   1. the text is split on added tokens' literal content (they encode to their id);
//   2. each remaining piece is pre-tokenized with the Llama 3 / Qwen2 split rule — contractions
//      ('s 't 're 've 'm 'll 'd), [^\r\n L N]?L+, N{1,3}, ' '?[^\s L N]+[\r\n]*, \s*[\r\n]+,
//      \s+(?!\S), \s+ — where L is an ASCII letter or ANY non-ASCII code point and N an ASCII
//      digit (a documented approximation of the Unicode classes \p{L} / \p{N});
//   3. each pre-token's bytes map to the GPT-2 byte alphabet and are merged pairwise, lowest
//      merge rank first, until no listed pair remains.
// Decoding maps the byte alphabet back; added tokens decode to their content.
// EOS: the first of <|end_of_text|>, <|endoftext|>, <|im_end|>, </s>, <eos> present.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/data/tokenizer.h"

namespace graft {

class BpeTokenizer : public Tokenizer {
 public:
  // InputError naming the file and the field for anything it cannot use.
  static std::unique_ptr<BpeTokenizer> load(const std::string& path);

  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t eos_id() const override { return eos_id_; }
  int64_t bos_id() const override { return bos_id_; }
  std::string spec() const override { return path_; }

  // The pre-tokenizer split of step 2 (exposed for tests).
  static std::vector<std::string> pre_tokenize(std::string_view text);

 private:
  void encode_word(const std::string& word, std::vector<int64_t>& out) const;

  std::string path_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int64_t> merge_rank_;  // "a b" -> rank
  std::vector<std::pair<std::string, int64_t>> added_;   // content -> id, longest first
  std::vector<bool> is_added_;
  int64_t vocab_size_ = 0, eos_id_ = -1, bos_id_ = -1;
  std::string byte_to_unicode_[256];
  // Pre-token -> ids; words repeat a lot in text. Not thread-safe (one tokenizer per thread).
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
  std::unordered_map<std::string, unsigned char> unicode_to_byte_;
};

}  // namespace graft
