#include "framework/data/tokenizer_decoder.h"

#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"
#include "framework/data/tokenizer_regex.h"
#include "framework/data/tokenizer_utf8.h"

namespace graft::tok {
namespace {

using nlohmann::json;
using Tokens = std::vector<std::string>;

class SequenceDecoder : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> steps;
  void decode_chain(Tokens& t) const override {
    for (const auto& d : steps) d->decode_chain(t);
  }
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(Tokens& t) const override {
    std::string bytes;
    for (const auto& tok : t) {
      std::string mapped;
      bool all = true;
      for (size_t i = 0; i < tok.size() && all;) {
        const size_t n = utf8_scan(tok, i);
        const int b = byte_level_byte(std::string_view(tok).substr(i, n));
        all = b >= 0;
        mapped.push_back(static_cast<char>(b));
        i += n;
      }
      bytes += all ? mapped : tok;
    }
    t = {utf8_lossy(bytes)};
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool first_keeps) : rep_(std::move(rep)), keep_(first_keeps) {}
  void decode_chain(Tokens& t) const override {
    for (size_t i = 0; i < t.size(); ++i) {
      std::string out;
      for (size_t at = 0;;) {
        const size_t hit = t[i].find(rep_, at);
        out.append(t[i], at, hit == std::string::npos ? std::string::npos : hit - at);
        if (hit == std::string::npos) break;
        if (i > 0 || keep_) out += ' ';
        at = hit + rep_.size();
      }
      t[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool keep_;  // prepend_scheme never: the first token's replacements are spaces too
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(Tokens& t) const override {
    for (auto& s : t) s = re_->replace_all(s, content_);
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

int byte_token(const std::string& s) {  // <0xNN> -> NN, else -1
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = s[k];
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(Tokens& t) const override {
    Tokens out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (utf8_lossy(bytes) == bytes)
        out.push_back(bytes);
      else
        for (size_t k = 0; k < bytes.size(); ++k) out.push_back("\xEF\xBF\xBD");
      bytes.clear();
    };
    for (auto& s : t) {
      const int b = byte_token(s);
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
        continue;
      }
      flush();
      out.push_back(std::move(s));
    }
    flush();
    t = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(Tokens& t) const override {
    std::string all;
    for (const auto& s : t) all += s;
    t = {all};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : c_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(Tokens& t) const override {
    for (auto& s : t) {
      size_t b = 0, e = s.size();
      for (size_t k = 0; k < start_ && s.compare(b, c_.size(), c_) == 0 && b < e; ++k)
        b += c_.size();
      for (size_t k = 0;
           k < stop_ && e >= b + c_.size() && s.compare(e - c_.size(), c_.size(), c_) == 0; ++k)
        e -= c_.size();
      s = s.substr(b, e - b);
    }
  }

 private:
  std::string c_;
  size_t start_, stop_;
};

size_t json_count(const json& j, const char* name, const std::string& file,
                  const std::string& key) {
  const json& v = json_at(j, name, file, key);
  GRAFT_INPUT_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
                    file, ": ", key, ".", name, " = ", v.dump(), ", expected a count >= 0");
  return v.get<size_t>();
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& file,
                                      const std::string& key) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, file, key);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceDecoder>();
    const json& list = json_at(j, "decoders", file, key);
    for (size_t i = 0; i < list.size(); ++i) {
      auto d = make_decoder(list[i], file, str(key, ".decoders[", i, "]"));
      if (d) seq->steps.push_back(std::move(d));
    }
    return seq;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool never = !json_bool(j, "add_prefix_space", true, file, key);
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null())
      never = json_string(j, "prepend_scheme", file, key) == "never";
    return std::make_unique<MetaspaceDecoder>(json_string(j, "replacement", file, key), never);
  }
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(json_pattern(j, file, key),
                                            json_string(j, "content", file, key));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(json_string(j, "content", file, key),
                                          json_count(j, "start", file, key),
                                          json_count(j, "stop", file, key));
  throw InputError(str(file, ": ", key, ".type = ", type,
                       " is not supported (supported decoders: Sequence, ByteLevel, Metaspace, "
                       "Replace, ByteFallback, Fuse, Strip)"));
}

}  // namespace graft::tok
