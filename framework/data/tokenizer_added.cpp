#include "framework/data/tokenizer_added.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"
#include "framework/data/tokenizer_regex.h"
#include "framework/data/tokenizer_utf8.h"

namespace graft::tok {

using nlohmann::json;

namespace {

// Rust regex \w$ and ^\w (single_word) on the one character before / after a match. Rust's \w
// is Alphabetic, marks, decimal digits, connector punctuation and joiners (PCRE2's is narrower).
bool is_word_char(std::string_view c) {
  static const Regex re(R"(^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$)", false,
                        "added-token word check");
  return !re.find_all(c).empty();
}
bool word_char_before(std::string_view s) {
  size_t k = s.size() - 1;  // start of the last character
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80 && s.size() - k < 4) --k;
  if (utf8_scan(s, k) != s.size() - k) k = s.size() - 1;
  return is_word_char(s.substr(k));
}
bool word_char_after(std::string_view s) { return is_word_char(s.substr(0, utf8_scan(s, 0))); }

// Where the run of White_Space that ends s begins, and where the one that starts s ends.
size_t space_run_before(std::string_view s) {
  size_t b = s.size();
  while (b > 0) {
    size_t k = b - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (utf8_scan(s, k) != b - k || !is_white_space(utf8_code_point(s, k))) break;
    b = k;
  }
  return b;
}
size_t space_run_after(std::string_view s) {
  size_t e = 0;
  while (e < s.size() && is_white_space(utf8_code_point(s, e))) e += utf8_scan(s, e);
  return e;
}

}  // namespace

void AddedTokens::load(const json& j, const std::string& file, const Normalizer* normalizer) {
  if (j.is_null()) return;
  GRAFT_INPUT_CHECK(j.is_array(), file, ": added_tokens: expected an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string key = str("added_tokens[", i, "]");
    AddedToken t;
    t.content = json_string(j[i], "content", file, key);
    const json& id = json_at(j[i], "id", file, key);
    GRAFT_INPUT_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0, file, ": ", key,
                      ".id = ", id.dump(), ", expected an id >= 0");
    t.id = id.get<int64_t>();
    t.special = json_bool(j[i], "special", false, file, key);
    t.single_word = json_bool(j[i], "single_word", false, file, key);
    t.lstrip = json_bool(j[i], "lstrip", false, file, key);
    t.rstrip = json_bool(j[i], "rstrip", false, file, key);
    t.normalized = json_bool(j[i], "normalized", !t.special, file, key);
    t.pattern = t.content;
    if (t.normalized && normalizer) normalizer->normalize(t.pattern);
    if (t.content.empty()) continue;  // HF ignores them
    tokens_.push_back(std::move(t));
  }
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const auto& t = tokens_[k];
    if (!t.pattern.empty())
      by_first_[t.normalized][static_cast<unsigned char>(t.pattern[0])].push_back(k);
  }
  for (auto& table : by_first_)
    for (auto& list : table)
      std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
        return tokens_[a].pattern.size() > tokens_[b].pattern.size();
      });
}

const AddedToken* AddedTokens::find(int64_t id) const {
  for (const auto& t : tokens_)
    if (t.id == id) return &t;
  return nullptr;
}

std::vector<AddedTokens::Span> AddedTokens::split(std::string_view text, bool normalized) const {
  std::vector<Span> out;
  const auto& table = by_first_[normalized];
  size_t done = 0;  // end of the last span emitted
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (size_t k : table[static_cast<unsigned char>(text[i])]) {
      if (text.compare(i, tokens_[k].pattern.size(), tokens_[k].pattern) == 0) {
        hit = &tokens_[k];
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->pattern.size();
    i = e;  // the matcher goes on after this match, kept or not
    if (hit->single_word && ((b > 0 && word_char_before(text.substr(0, b))) ||
                             (e < text.size() && word_char_after(text.substr(e)))))
      continue;
    if (hit->lstrip) b = std::max(space_run_before(text.substr(0, b)), done);
    if (hit->rstrip) e += space_run_after(text.substr(e));
    i = std::max(i, e);  // (HF would let a token inside the stripped space overlap this one)
    if (done < b) out.push_back({done, b, -1});
    out.push_back({b, e, hit->id});
    done = e;
  }
  if (done < text.size() || text.empty()) out.push_back({done, text.size(), -1});
  return out;
}

}  // namespace graft::tok
