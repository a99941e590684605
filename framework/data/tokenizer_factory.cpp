#include <filesystem>

#include "framework/core/error.h"
#include "framework/data/tokenizer.h"
#include "framework/data/tokenizer_bpe.h"

namespace graft {

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  GRAFT_INPUT_CHECK(std::filesystem::is_regular_file(spec), spec,
                    ": no such tokenizer file (expected byte or a tokenizer.json)");
  auto tok = BpeTokenizer::load(spec);
  GRAFT_INPUT_CHECK(tok->eos_id() >= 0, spec,
                    ": no end-of-text token (<|end_of_text|>, <|endoftext|>, <|im_end|>, </s> or "
                    "<eos>) to separate documents");
  return tok;
}

}  // namespace graft
