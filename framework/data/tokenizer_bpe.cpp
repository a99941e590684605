#include "framework/data/tokenizer_bpe.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace graft {

namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes).
size_t utf8_len(unsigned char c) {
  if (c >= 0xF0 && c < 0xF8) return 4;
  if (c >= 0xE0) return c < 0xF0 ? 3 : 1;
  if (c >= 0xC0) return 2;
  return 1;
}

enum class Cls { kLetter, kDigit, kSpace, kNewline, kOther };

Cls classify(std::string_view t, size_t i) {
  const unsigned char c = static_cast<unsigned char>(t[i]);
  if (c >= 0x80) return Cls::kLetter;
  if (std::isalpha(c)) return Cls::kLetter;
  if (std::isdigit(c)) return Cls::kDigit;
  if (c == '\r' || c == '\n') return Cls::kNewline;
  if (std::isspace(c)) return Cls::kSpace;
  return Cls::kOther;
}

size_t char_len(std::string_view t, size_t i) {
  return std::min(utf8_len(static_cast<unsigned char>(t[i])), t.size() - i);
}

bool is_ws(Cls c) { return c == Cls::kSpace || c == Cls::kNewline; }

}  // namespace

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view t) {
  std::vector<std::string> out;
  size_t i = 0;
  const size_t n = t.size();
  auto cls = [&](size_t k) { return classify(t, k); };
  while (i < n) {
    const size_t start = i;
    // Contractions.
    if (t[i] == '\'' && i + 1 < n) {
      static const char* kSuffixes[] = {"ll", "ve", "re", "s", "t", "m", "d"};
      bool matched = false;
      for (const char* s : kSuffixes) {
        const size_t l = std::char_traits<char>::length(s);
        if (i + 1 + l > n) continue;
        bool eq = true;
        for (size_t k = 0; k < l; ++k)
          eq = eq && std::tolower(static_cast<unsigned char>(t[i + 1 + k])) == s[k];
        if (eq) {
          out.emplace_back(t.substr(i, 1 + l));
          i += 1 + l;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    const Cls c = cls(i);
    // [^\r\n L N]? L+
    {
      size_t j = i;
      if (c != Cls::kNewline && c != Cls::kLetter && c != Cls::kDigit) j += char_len(t, i);
      if (j < n && cls(j) == Cls::kLetter) {
        while (j < n && cls(j) == Cls::kLetter) j += char_len(t, j);
        out.emplace_back(t.substr(start, j - start));
        i = j;
        continue;
      }
    }
    // N{1,3}
    if (c == Cls::kDigit) {
      size_t j = i;
      while (j < n && j - i < 3 && cls(j) == Cls::kDigit) ++j;
      out.emplace_back(t.substr(i, j - i));
      i = j;
      continue;
    }
    // ' '?[^\s L N]+[\r\n]*
    {
      size_t j = i;
      if (t[j] == ' ') ++j;
      if (j < n && cls(j) == Cls::kOther) {
        while (j < n && cls(j) == Cls::kOther) j += char_len(t, j);
        while (j < n && cls(j) == Cls::kNewline) ++j;
        out.emplace_back(t.substr(start, j - start));
        i = j;
        continue;
      }
    }
    // \s*[\r\n]+ : whitespace run up to and including its last newline group.
    size_t j = i;
    while (j < n && is_ws(cls(j))) ++j;
    size_t last_nl = std::string::npos;
    for (size_t k = i; k < j; ++k)
      if (cls(k) == Cls::kNewline) last_nl = k;
    if (last_nl != std::string::npos) {
      out.emplace_back(t.substr(i, last_nl + 1 - i));
      i = last_nl + 1;
      continue;
    }
    // \s+(?!\S) then \s+: a space run followed by a non-space leaves its last char behind.
    if (j < n && j - i > 1) j -= 1;
    out.emplace_back(t.substr(i, j - i));
    i = j;
  }
  return out;
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& path) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), path, ": cannot read the tokenizer file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": not valid JSON: ", e.what()));
  }
  auto tok = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  tok->path_ = path;
  try {
    const auto& model = j.at("model");
    GRAFT_INPUT_CHECK(model.value("type", "") == "BPE", path,
                      ": model.type = ", model.value("type", "(missing)"),
                      ", only BPE is supported");
    const std::string pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "";
    GRAFT_INPUT_CHECK(pre.find("ByteLevel") != std::string::npos, path,
                      ": pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
    for (const auto& [token, id] : model.at("vocab").items()) {
      tok->vocab_[token] = id.get<int64_t>();
      tok->vocab_size_ = std::max(tok->vocab_size_, id.get<int64_t>() + 1);
    }
    int64_t rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string key;
      if (m.is_string())
        key = m.get<std::string>();
      else
        key = m.at(0).get<std::string>() + " " + m.at(1).get<std::string>();
      tok->merge_rank_.emplace(key, rank++);
    }
    if (j.contains("added_tokens")) {
      for (const auto& a : j["added_tokens"]) {
        const int64_t id = a.at("id").get<int64_t>();
        tok->added_.emplace_back(a.at("content").get<std::string>(), id);
        tok->vocab_size_ = std::max(tok->vocab_size_, id + 1);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": ", e.what()));
  }
  std::sort(tok->added_.begin(), tok->added_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  tok->id_to_token_.resize(tok->vocab_size_);
  tok->is_added_.assign(tok->vocab_size_, false);
  for (const auto& [t, id] : tok->vocab_) tok->id_to_token_[id] = t;
  for (const auto& [t, id] : tok->added_) {
    tok->id_to_token_[id] = t;
    tok->is_added_[id] = true;
  }
  auto find = [&](const char* s) -> int64_t {
    for (const auto& [t, id] : tok->added_)
      if (t == s) return id;
    auto it = tok->vocab_.find(s);
    return it == tok->vocab_.end() ? -1 : it->second;
  };
  for (const char* e : {"<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "</s>", "<eos>"})
    if (tok->eos_id_ < 0) tok->eos_id_ = find(e);
  for (const char* b : {"<|begin_of_text|>", "<s>", "<bos>"})
    if (tok->bos_id_ < 0) tok->bos_id_ = find(b);
  GRAFT_INPUT_CHECK(tok->eos_id_ >= 0, path,
                    ": no end-of-text token (<|end_of_text|>, <|endoftext|>, <|im_end|>, </s> or "
                    "<eos>) to separate documents");
  // GPT-2 byte alphabet: printable bytes map to themselves, the rest to 256 + k.
  int k = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    tok->byte_to_unicode_[b] = utf8(printable ? b : 256 + k++);
    tok->unicode_to_byte_[tok->byte_to_unicode_[b]] = static_cast<unsigned char>(b);
  }
  return tok;
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int64_t>& out) const {
  if (auto hit = cache_.find(word); hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  const size_t first = out.size();
  std::vector<std::string> sym;
  for (unsigned char c : word) sym.push_back(byte_to_unicode_[c]);
  while (sym.size() > 1) {
    int64_t best = INT64_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merge_rank_.find(sym[i] + " " + sym[i + 1]);
      if (it != merge_rank_.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT64_MAX) break;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  for (const auto& s : sym) {
    auto it = vocab_.find(s);
    GRAFT_INPUT_CHECK(it != vocab_.end(), path_, ": the vocabulary lacks the symbol '", s,
                      "' (an incomplete byte alphabet?)");
    out.push_back(it->second);
  }
  if (cache_.size() < (1u << 20))
    cache_.emplace(word, std::vector<int64_t>(out.begin() + first, out.end()));
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  size_t i = 0, piece = 0;
  auto flush = [&](size_t end) {
    for (const auto& w : pre_tokenize(text.substr(piece, end - piece))) encode_word(w, out);
  };
  while (i < text.size()) {
    bool hit = false;
    for (const auto& [content, id] : added_) {
      if (!content.empty() && text.compare(i, content.size(), content) == 0) {
        flush(i);
        out.push_back(id);
        i += content.size();
        piece = i;
        hit = true;
        break;
      }
    }
    if (!hit) ++i;
  }
  flush(text.size());
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string s;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size_ || id_to_token_[id].empty()) {
      s += "<?>";
      continue;
    }
    const std::string& t = id_to_token_[id];
    if (is_added_[id]) {
      s += t;
      continue;
    }
    for (size_t i = 0; i < t.size();) {
      const size_t l = std::min(utf8_len(static_cast<unsigned char>(t[i])), t.size() - i);
      auto it = unicode_to_byte_.find(t.substr(i, l));
      if (it != unicode_to_byte_.end())
        s.push_back(static_cast<char>(it->second));
      else
        s += t.substr(i, l);
      i += l;
    }
  }
  return s;
}

}  // namespace graft
