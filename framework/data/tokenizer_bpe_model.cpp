#include "framework/data/tokenizer_bpe_model.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <queue>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"
#include "framework/data/tokenizer_utf8.h"

namespace graft::tok {

using nlohmann::json;

namespace {
uint64_t pair_key(int64_t a, int64_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
}
}  // namespace

BpeModel::BpeModel(const json& j, const std::string& file) : file_(file) {
  const std::string type = json_type(j, file, "model");
  GRAFT_INPUT_CHECK(type == "BPE", file, ": model.type = ", type,
                    " is not supported (only BPE models are)");
  GRAFT_INPUT_CHECK(!j.contains("dropout") || j["dropout"].is_null() || j["dropout"] == 0, file,
                    ": model.dropout = ", j.value("dropout", json()).dump(),
                    " is not supported (BPE dropout is for training; expected null)");
  const json& vocab = json_at(j, "vocab", file, "model");
  GRAFT_INPUT_CHECK(vocab.is_object(), file, ": model.vocab: expected an object {token: id}");
  int64_t n = 0;
  for (const auto& [tok, id] : vocab.items()) {
    GRAFT_INPUT_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0, file, ": model.vocab[\"",
                      tok, "\"] = ", id.dump(), ", expected an id >= 0");
    vocab_[tok] = id.get<int64_t>();
    n = std::max(n, id.get<int64_t>() + 1);
  }
  id_to_token_.resize(n);
  for (const auto& [tok, id] : vocab_) id_to_token_[id] = tok;
  auto opt_string = [&](const char* name) {
    return j.contains(name) && !j[name].is_null() ? json_string(j, name, file, "model")
                                                  : std::string();
  };
  prefix_ = opt_string("continuing_subword_prefix");
  suffix_ = opt_string("end_of_word_suffix");
  const std::string unk = opt_string("unk_token");
  if (!unk.empty()) {
    unk_id_ = id(unk);
    GRAFT_INPUT_CHECK(unk_id_ >= 0, file, ": model.unk_token = ", unk, " is not in model.vocab");
  }
  byte_fallback_ = json_bool(j, "byte_fallback", false, file, "model");
  fuse_unk_ = json_bool(j, "fuse_unk", false, file, "model");
  ignore_merges_ = json_bool(j, "ignore_merges", false, file, "model");
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_id_[b] = id(name);
  }
  const json& merges = json_at(j, "merges", file, "model");
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      GRAFT_INPUT_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, file,
                        ": model.merges[", r, "] = \"", s, "\", expected \"a b\"");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else {
      GRAFT_INPUT_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), file,
                        ": model.merges[", r, "] = ", m.dump(), ", expected [a, b]");
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    }
    const std::string joined =
        a + (b.compare(0, prefix_.size(), prefix_) == 0 ? b.substr(prefix_.size()) : b);
    const int64_t ia = id(a), ib = id(b), ij = id(joined);
    GRAFT_INPUT_CHECK(ia >= 0 && ib >= 0 && ij >= 0, file, ": model.merges[", r, "] = ", m.dump(),
                      ": '",
                      ia < 0   ? a
                      : ib < 0 ? b
                               : joined,
                      "' is not in model.vocab");
    merges_[pair_key(ia, ib)] = {static_cast<int64_t>(r), ij};  // a repeated pair: the last wins
  }
}

int64_t BpeModel::id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::merge(std::vector<int64_t>& sym) const {
  // word.rs merge_all: a heap of (rank, position); stale entries are skipped when popped.
  const int n = static_cast<int>(sym.size());
  std::vector<int> prev(n), next(n);
  std::vector<bool> gone(n, false);
  for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Item {
    int64_t rank;
    int pos;
    int64_t id;
    bool operator>(const Item& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> q;
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(pair_key(sym[pos], sym[next[pos]]));
    if (it != merges_.end()) q.push({it->second.rank, pos, it->second.id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    const Item top = q.top();
    q.pop();
    if (gone[top.pos] || next[top.pos] < 0) continue;
    const int right = next[top.pos];
    auto it = merges_.find(pair_key(sym[top.pos], sym[right]));
    if (it == merges_.end() || it->second.id != top.id) continue;  // expired entry
    sym[top.pos] = top.id;
    gone[right] = true;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push(prev[top.pos]);
    push(top.pos);
  }
  size_t k = 0;
  for (int i = 0; i < n; ++i)
    if (!gone[i]) sym[k++] = sym[i];
  sym.resize(k);
}

void BpeModel::tokenize(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  const std::string w(word);
  if (ignore_merges_) {
    if (auto it = vocab_.find(w); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (auto hit = cache_.find(w); hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<int64_t> sym;
  bool pending_unk = false;  // an unknown character waits (to fuse with the next)
  for (size_t i = 0; i < word.size();) {
    const size_t len = utf8_scan(word, i);
    std::string s(word.substr(i, len));
    if (i > 0) s.insert(0, prefix_);
    i += len;
    if (i == word.size()) s += suffix_;
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (pending_unk) sym.push_back(unk_id_), pending_unk = false;
      sym.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_id_[c] >= 0;
      if (all) {
        // HF does not flush a pending unk here: it lands after these bytes.
        for (unsigned char c : s) sym.push_back(byte_id_[c]);
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // no unk_token: the character is dropped, as in HF
    if (pending_unk && !fuse_unk_) sym.push_back(unk_id_);
    pending_unk = true;
  }
  if (pending_unk) sym.push_back(unk_id_);
  merge(sym);
  out.insert(out.end(), sym.begin(), sym.end());
  if (word.size() < 256 && cache_.size() < (1u << 18)) cache_.emplace(w, std::move(sym));
}

}  // namespace graft::tok
