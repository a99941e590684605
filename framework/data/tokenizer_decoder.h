// tokenizer.json "decoder": token strings -> text (Hugging Face decoders/*.rs). Each decoder maps
// the list of token strings to a new list (decode_chain); the text is the final list joined.
//
//   Sequence {decoders}      each in turn
//   ByteLevel                GPT-2 alphabet characters -> bytes (a token with other characters
//                            keeps its own bytes), then invalid UTF-8 -> U+FFFD
//   Metaspace {replacement, prepend_scheme}   replacement -> " ", none at all in the first token
//                            unless prepend_scheme is never
//   Replace {pattern, content}   in every token
//   ByteFallback             runs of <0xNN> tokens -> their bytes when valid UTF-8, else one
//                            U+FFFD per token
//   Fuse                     all tokens -> one
//   Strip {content, start, stop}   up to start / stop copies of content off each token's ends
// Without a decoder the tokens are joined with spaces. Others (WordPiece, BPEDecoder, CTC) are an
// InputError naming the file and the key.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace graft::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// j: the "decoder" object (null -> nullptr); file and key name it in errors.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& file,
                                      const std::string& key);

}  // namespace graft::tok
