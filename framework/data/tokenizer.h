// Tokenizers: text <-> token ids.
//
// ByteTokenizer: ids 0..255 are the bytes of the UTF-8 text, 256 = <bos>, 257 = <eos>
// (vocab_size 258). Lossless for any byte string.
// BpeTokenizer (tokenizer_bpe.h): Hugging Face tokenizer.json BPE (byte-level and
// SentencePiece-style), ids identical to the `tokenizers` library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace graft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t bos_id() const = 0;  // -1 when the tokenizer has none
  // "byte" or the tokenizer.json path: what meta.json and checkpoints record.
  virtual std::string spec() const = 0;
};

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kBos = 256, kEos = 257, kVocab = 258;
  std::vector<int64_t> encode(std::string_view text) const override;
  // Special tokens decode to "<bos>"/"<eos>"; ids outside the vocabulary to "<?>".
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return kVocab; }
  int64_t eos_id() const override { return kEos; }
  int64_t bos_id() const override { return kBos; }
  std::string spec() const override { return "byte"; }
};

// "byte" or a path to a tokenizer.json. InputError naming the file when it cannot be used.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

}  // namespace graft
