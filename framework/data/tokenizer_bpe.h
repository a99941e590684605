// Hugging Face tokenizer.json with a BPE model: byte-level BPE (GPT-2, Llama 3, Qwen) and
// SentencePiece-style BPE (Llama 2, Mistral, Gemma: Metaspace or Prepend/Replace "▁", byte
// fallback). Ids match the Hugging Face `tokenizers` library's encode(text,
// add_special_tokens=False); decode matches its decode(ids, skip_special_tokens=False).
//
// Encoding (tokenizer/mod.rs encode_single_sequence):
//   1. added tokens with normalized = false are split out of the raw text (tokenizer_added.h);
//   2. each stretch between them is normalized (tokenizer_normalizer.h), then the normalized
//      added tokens are split out of it;
//   3. the remaining stretches are pre-tokenized into words (tokenizer_pre.h);
//   4. the BPE model encodes each word (tokenizer_bpe_model.h).
// Decoding: each id's token string (an added token's content, normalized when it is matched
// normalized), through the decoder (tokenizer_decoder.h); ids outside the vocabulary -> "<?>".
// The post_processor (BOS/EOS templates) and truncation/padding are not applied.
// EOS: the first of <|end_of_text|>, <|endoftext|>, <|im_end|>, </s>, <eos> present;
// BOS: <|begin_of_text|>, <s>, <bos>.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "framework/data/tokenizer.h"
#include "framework/data/tokenizer_added.h"
#include "framework/data/tokenizer_bpe_model.h"
#include "framework/data/tokenizer_decoder.h"
#include "framework/data/tokenizer_normalizer.h"
#include "framework/data/tokenizer_pre.h"

namespace graft {

class BpeTokenizer : public Tokenizer {
 public:
  // InputError naming the file and the key for anything it cannot use.
  static std::unique_ptr<BpeTokenizer> load(const std::string& path);

  // Not thread-safe (the model's word cache): one tokenizer per thread.
  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t eos_id() const override { return eos_id_; }
  int64_t bos_id() const override { return bos_id_; }
  std::string spec() const override { return path_; }

 private:
  BpeTokenizer() = default;
  // Steps 3-4 for one stretch of normalized text.
  void encode_text(std::string text, bool at_start, std::vector<int64_t>& out) const;

  std::string path_;
  std::unique_ptr<tok::Normalizer> normalizer_;
  std::unique_ptr<tok::PreTokenizer> pre_;
  std::unique_ptr<tok::BpeModel> model_;
  tok::AddedTokens added_;
  std::unique_ptr<tok::Decoder> decoder_;
  std::vector<const tok::AddedToken*> added_by_id_;  // id -> added token or nullptr
  int64_t vocab_size_ = 0, eos_id_ = -1, bos_id_ = -1;
};

}  // namespace graft
