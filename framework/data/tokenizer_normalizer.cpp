#include "framework/data/tokenizer_normalizer.h"

#include <unicase.h>
#include <uninorm.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"
#include "framework/data/tokenizer_regex.h"
#include "framework/data/tokenizer_utf8.h"

namespace graft::tok {
namespace {

using nlohmann::json;

class SequenceNormalizer : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> steps;
  void normalize(std::string& s) const override {
    for (const auto& n : steps) n->normalize(s);
  }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class Replace : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override { s = re_->replace_all(s, content_); }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    while (left_ && b < e && is_white_space(utf8_code_point(s, b))) b += utf8_scan(s, b);
    while (right_ && e > b) {
      size_t k = e - 1;  // start of the last character
      while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
      if (utf8_scan(s, k) != e - k || !is_white_space(utf8_code_point(s, k))) break;
      e = k;
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void normalize(std::string& s) const override { s = byte_level_encode(s); }
};

// libunistring on each maximal valid UTF-8 run (it rejects invalid input).

class UnicodeMap : public Normalizer {
 public:
  UnicodeMap(uninorm_t form, bool lower) : form_(form), lower_(lower) {}
  void normalize(std::string& s) const override {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      bool ok = true;
      while (j < s.size()) {
        const size_t n = utf8_scan(s, j, &ok);
        if (!ok) break;
        j += n;
      }
      out += map(std::string_view(s).substr(i, j - i));
      if (j < s.size()) {
        const size_t n = utf8_scan(s, j);
        out.append(s, j, n);
        j += n;
      }
      i = j;
    }
    s = std::move(out);
  }

 private:
  std::string map(std::string_view v) const {
    if (v.empty()) return "";
    size_t len = 0;
    const auto* in = reinterpret_cast<const uint8_t*>(v.data());
    if (lower_) return lower(v);
    uint8_t* r = u8_normalize(form_, in, v.size(), nullptr, &len);
    GRAFT_CHECK(r != nullptr, "libunistring failed on valid UTF-8 (out of memory?)");
    std::string out(reinterpret_cast<const char*>(r), len);
    std::free(r);
    return out;
  }
  // Character by character, as Rust's char::to_lowercase: full mappings (İ -> i̇) but no
  // context, so a final Σ becomes σ, not ς.
  static std::string lower(std::string_view v) {
    std::string out;
    for (size_t i = 0; i < v.size();) {
      const size_t n = utf8_scan(v, i);
      const char c = v[i];
      if (n == 1 && c >= 'A' && c <= 'Z') {
        out.push_back(static_cast<char>(c - 'A' + 'a'));
      } else if (n == 1 && static_cast<unsigned char>(c) < 0x80) {
        out.push_back(c);
      } else {
        size_t len = 0;
        uint8_t* r = u8_tolower(reinterpret_cast<const uint8_t*>(v.data() + i), n, nullptr, nullptr,
                                nullptr, &len);
        GRAFT_CHECK(r != nullptr, "libunistring failed on valid UTF-8 (out of memory?)");
        out.append(reinterpret_cast<const char*>(r), len);
        std::free(r);
      }
      i += n;
    }
    return out;
  }
  uninorm_t form_;
  bool lower_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& file,
                                            const std::string& key) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, file, key);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceNormalizer>();
    const json& list = json_at(j, "normalizers", file, key);
    for (size_t i = 0; i < list.size(); ++i) {
      auto n = make_normalizer(list[i], file, str(key, ".normalizers[", i, "]"));
      if (n) seq->steps.push_back(std::move(n));
    }
    return seq;
  }
  if (type == "Prepend") return std::make_unique<Prepend>(json_string(j, "prepend", file, key));
  if (type == "Replace")
    return std::make_unique<Replace>(json_pattern(j, file, key),
                                     json_string(j, "content", file, key));
  if (type == "Strip")
    return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Lowercase") return std::make_unique<UnicodeMap>(UNINORM_NFC, true);
  if (type == "NFC") return std::make_unique<UnicodeMap>(UNINORM_NFC, false);
  if (type == "NFD") return std::make_unique<UnicodeMap>(UNINORM_NFD, false);
  if (type == "NFKC") return std::make_unique<UnicodeMap>(UNINORM_NFKC, false);
  if (type == "NFKD") return std::make_unique<UnicodeMap>(UNINORM_NFKD, false);
  throw InputError(str(file, ": ", key, ".type = ", type,
                       " is not supported (supported normalizers: Sequence, Prepend, Replace, "
                       "Strip, NFC, NFD, NFKC, NFKD, Lowercase, ByteLevel)"));
}

}  // namespace graft::tok
