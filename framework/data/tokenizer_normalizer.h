// tokenizer.json "normalizer": rewrites each stretch of text between added tokens before the
// pre-tokenizer sees it (Hugging Face normalizers/*.rs).
//
//   Sequence {normalizers}      each in turn
//   Prepend {prepend}           prepend the string to non-empty text (Llama 2's "▁")
//   Replace {pattern, content}  every match of pattern ({"String": s} or {"Regex": r}) -> content
//   Strip {strip_left, strip_right}   Unicode White_Space at either end
//   NFC, NFD, NFKC, NFKD        Unicode normalization (libunistring); invalid UTF-8 stays as is
//   Lowercase                   Unicode lowercasing character by character (libunistring), as
//                               Rust char::to_lowercase: no final-sigma context
//   ByteLevel                   every byte -> its GPT-2 alphabet character
// Anything else (BertNormalizer, StripAccents, Nmt, Precompiled) is an InputError naming the file
// and the key: "tok.json: normalizer.normalizers[1].type = Precompiled is not supported (...)".
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace graft::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// j: the "normalizer" object (null -> nullptr); file and key name it in errors.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& file,
                                            const std::string& key);

}  // namespace graft::tok
