// tokenizer.json "model" of type BPE (Hugging Face models/bpe): one pre-tokenized word -> ids.
//
// The word's characters (invalid UTF-8: one byte each) are looked up in the vocabulary
// (continuing_subword_prefix before all but the first, end_of_word_suffix after the last). A
// character not in it becomes its <0xNN> byte tokens when byte_fallback and all of them exist,
// else unk_token (consecutive unknowns fused into one with fuse_unk), else it is dropped. Then
// merges apply, lowest rank first and leftmost first among equal ranks, until no listed pair is
// left (word.rs merge_all). With ignore_merges a word found whole in the vocabulary is that token.
// Merges come as "a b" strings or [a, b] pairs; their rank is their position.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace graft::tok {

class BpeModel {
 public:
  // j: the "model" object. InputError naming the file and the key for anything unusable.
  BpeModel(const nlohmann::json& j, const std::string& file);

  // Appends the ids of one word. Not thread-safe (a word cache).
  void tokenize(std::string_view word, std::vector<int64_t>& out) const;
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  // The token of id ("" when the id is unused), and the id of a token (-1 when absent).
  const std::string& token(int64_t id) const { return id_to_token_[id]; }
  int64_t id(const std::string& token) const;

 private:
  void merge(std::vector<int64_t>& sym) const;

  std::string file_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  struct Merge {
    int64_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, merged id
  int64_t unk_id_ = -1;
  int64_t byte_id_[256];  // <0xNN>, -1 when absent
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace graft::tok
