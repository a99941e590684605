// The regular expressions of tokenizer.json (Split and Replace patterns, the GPT-2 ByteLevel
// rule), run by PCRE2 with PCRE2_UTF | PCRE2_UCP so that \p{L}, \p{N}, \s, \w follow Unicode
// properties as Oniguruma does for Hugging Face tokenizers. JIT-compiled when PCRE2 has a JIT.
// Invalid UTF-8 in a subject never fails: it matches no character (PCRE2_MATCH_INVALID_UTF).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace graft::tok {

class Regex {
 public:
  // literal: match `pattern` as a plain string. InputError "<where>: <PCRE2 message> at offset N
  // of <pattern>" when it does not compile.
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches left to right as [begin, end) byte offsets, like Oniguruma's
  // find_iter: an empty match right where the previous match ended is skipped.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;
  // Every match replaced by `with` (no group references).
  std::string replace_all(std::string_view s, std::string_view with) const;
  bool jit() const { return jit_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  bool jit_ = false;
};

}  // namespace graft::tok
