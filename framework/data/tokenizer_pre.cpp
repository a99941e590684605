#include "framework/data/tokenizer_pre.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"
#include "framework/data/tokenizer_regex.h"
#include "framework/data/tokenizer_utf8.h"

namespace graft::tok {

namespace {

using nlohmann::json;

struct Segment {
  size_t begin, end;
  bool is_match;
};

// The GPT-2 rule of the ByteLevel pre-tokenizer (byte_level.rs).
const Regex& gpt2_regex() {
  static const Regex re(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false,
      "the GPT-2 pre-tokenizer regex");
  return re;
}

class SequencePre : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& s : steps) s->apply(pieces);
  }
};

class SplitPre : public PreTokenizer {
 public:
  SplitPre(std::unique_ptr<Regex> re, SplitBehavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (const auto& p : pieces) split_piece(p, re_->find_all(p.text), behavior_, invert_, out);
    pieces = std::move(out);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      if (use_regex_)
        split_piece(p, gpt2_regex().find_all(p.text), SplitBehavior::kIsolated, false, out);
      else if (!p.text.empty())
        out.push_back(std::move(p));
    }
    for (auto& p : out) p.text = byte_level_encode(p.text);
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class MetaspacePre : public PreTokenizer {
 public:
  enum class Scheme { kAlways, kFirst, kNever };
  MetaspacePre(std::string replacement, Scheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto p : pieces) {
      std::string t;
      for (char c : p.text) c == ' ' ? t += rep_ : t += c;
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == Scheme::kAlways || (scheme_ == Scheme::kFirst && p.at_start)))
        t.insert(0, rep_);
      p.text = std::move(t);
      if (!split_) {
        if (!p.text.empty()) out.push_back(std::move(p));
        continue;
      }
      std::vector<std::pair<size_t, size_t>> m;
      for (size_t at = p.text.find(rep_); at != std::string::npos; at = p.text.find(rep_, at + 1))
        m.emplace_back(at, at + rep_.size());
      split_piece(p, m, SplitBehavior::kMergedWithNext, false, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  Scheme scheme_;
  bool split_;
};

SplitBehavior parse_behavior(const json& j, const std::string& file, const std::string& key) {
  const std::string b = json_string(j, "behavior", file, key);
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  throw InputError(str(file, ": ", key, ".behavior = ", b,
                       ", expected Removed, Isolated, MergedWithPrevious, MergedWithNext or "
                       "Contiguous"));
}

std::unique_ptr<PreTokenizer> make_metaspace(const json& j, const std::string& file,
                                             const std::string& key) {
  const std::string rep = json_string(j, "replacement", file, key);
  GRAFT_INPUT_CHECK(!rep.empty() && utf8_scan(rep, 0) == rep.size(), file, ": ", key,
                    ".replacement = \"", rep, "\", expected one character");
  auto scheme = MetaspacePre::Scheme::kAlways;
  if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
    const std::string s = json_string(j, "prepend_scheme", file, key);
    if (s == "first")
      scheme = MetaspacePre::Scheme::kFirst;
    else if (s == "never")
      scheme = MetaspacePre::Scheme::kNever;
    else
      GRAFT_INPUT_CHECK(s == "always", file, ": ", key, ".prepend_scheme = ", s,
                        ", expected always, first or never");
  }
  if (!json_bool(j, "add_prefix_space", true, file, key)) scheme = MetaspacePre::Scheme::kNever;
  return std::make_unique<MetaspacePre>(rep, scheme, json_bool(j, "split", true, file, key));
}

}  // namespace

void split_piece(const Piece& p, const std::vector<std::pair<size_t, size_t>>& matches,
                 SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
  // The text as alternating non-match / match segments (pattern.rs find_matches).
  std::vector<Segment> seg;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) seg.push_back({prev, b, invert});
    seg.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != p.text.size() || p.text.empty()) seg.push_back({prev, p.text.size(), invert});
  // Which segments stay, and how they merge (normalizer.rs NormalizedString::split).
  std::vector<Segment> keep;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& s : seg)
        if (!s.is_match) keep.push_back(s);
      break;
    case SplitBehavior::kIsolated:
      keep = seg;
      break;
    case SplitBehavior::kContiguous:
      for (const auto& s : seg) {
        if (s.is_match == previous_match && !keep.empty())
          keep.back().end = s.end;
        else
          keep.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : seg) {
        if (s.is_match && !previous_match && !keep.empty())
          keep.back().end = s.end;
        else
          keep.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = seg.size(); i-- > 0;) {
        if (seg[i].is_match && !previous_match && !keep.empty())
          keep.back().begin = seg[i].begin;
        else
          keep.push_back(seg[i]);
        previous_match = seg[i].is_match;
      }
      std::reverse(keep.begin(), keep.end());
      break;
  }
  for (const auto& s : keep)
    if (s.end > s.begin)
      out.push_back({p.text.substr(s.begin, s.end - s.begin), p.at_start && !s.begin});
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& file,
                                                 const std::string& key) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, file, key);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePre>();
    const json& list = json_at(j, "pretokenizers", file, key);
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_pre_tokenizer(list[i], file, str(key, ".pretokenizers[", i, "]"));
      if (p) seq->steps.push_back(std::move(p));
    }
    return seq;
  }
  if (type == "Split")
    return std::make_unique<SplitPre>(json_pattern(j, file, key), parse_behavior(j, file, key),
                                      json_bool(j, "invert", false, file, key));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(json_bool(j, "add_prefix_space", true, file, key),
                                          json_bool(j, "use_regex", true, file, key));
  if (type == "Metaspace") return make_metaspace(j, file, key);
  if (type == "Digits")
    return std::make_unique<SplitPre>(
        std::make_unique<Regex>(R"(\p{N})", false, str(file, ": ", key)),
        json_bool(j, "individual_digits", false, file, key) ? SplitBehavior::kIsolated
                                                            : SplitBehavior::kContiguous,
        false);
  throw InputError(str(file, ": ", key, ".type = ", type,
                       " is not supported (supported pre-tokenizers: Sequence, Split, ByteLevel, "
                       "Metaspace, Digits)"));
}

}  // namespace graft::tok
