#include "framework/data/tokenizer_bpe.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/data/tokenizer_json.h"

namespace graft {

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& path) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), path, ": cannot read the tokenizer file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": not valid JSON: ", e.what()));
  }
  GRAFT_INPUT_CHECK(j.is_object(), path, ": expected a tokenizer.json object");
  auto tok = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  tok->path_ = path;
  auto part = [&](const char* key) -> const nlohmann::json& {
    static const nlohmann::json null;
    return j.contains(key) ? j[key] : null;
  };
  try {
    tok->model_ = std::make_unique<tok::BpeModel>(tok::json_at(j, "model", path, "(top)"), path);
    tok->normalizer_ = tok::make_normalizer(part("normalizer"), path, "normalizer");
    tok->pre_ = tok::make_pre_tokenizer(part("pre_tokenizer"), path, "pre_tokenizer");
    tok->decoder_ = tok::make_decoder(part("decoder"), path, "decoder");
    tok->added_.load(part("added_tokens"), path, tok->normalizer_.get());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": ", e.what()));
  }
  tok->vocab_size_ = tok->model_->size();
  for (const auto& t : tok->added_.tokens())
    tok->vocab_size_ = std::max(tok->vocab_size_, t.id + 1);
  tok->added_by_id_.assign(tok->vocab_size_, nullptr);
  for (const auto& t : tok->added_.tokens())
    if (!tok->added_by_id_[t.id]) tok->added_by_id_[t.id] = &t;
  auto find = [&](const char* s) -> int64_t {
    for (const auto& t : tok->added_.tokens())
      if (t.content == s) return t.id;
    return tok->model_->id(s);
  };
  for (const char* e : {"<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "</s>", "<eos>"})
    if (tok->eos_id_ < 0) tok->eos_id_ = find(e);
  for (const char* b : {"<|begin_of_text|>", "<s>", "<bos>"})
    if (tok->bos_id_ < 0) tok->bos_id_ = find(b);
  return tok;
}

void BpeTokenizer::encode_text(std::string text, bool at_start, std::vector<int64_t>& out) const {
  std::vector<tok::Piece> pieces{{std::move(text), at_start}};
  if (pre_) pre_->apply(pieces);
  for (const auto& p : pieces) model_->tokenize(p.text, out);
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  for (const auto& raw : added_.split(text, /*normalized=*/false)) {
    if (raw.id >= 0) {
      out.push_back(raw.id);
      continue;
    }
    std::string s(text.substr(raw.begin, raw.end - raw.begin));
    if (s.empty()) continue;
    if (normalizer_) normalizer_->normalize(s);
    for (const auto& n : added_.split(s, /*normalized=*/true)) {
      if (n.id >= 0)
        out.push_back(n.id);
      else if (n.end > n.begin)
        encode_text(s.substr(n.begin, n.end - n.begin), raw.begin == 0 && n.begin == 0, out);
    }
  }
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      tokens.emplace_back("<?>");
    } else if (const tok::AddedToken* a = added_by_id_[id]) {
      tokens.push_back(a->normalized ? a->pattern : a->content);
    } else if (id < model_->size() && !model_->token(id).empty()) {
      tokens.push_back(model_->token(id));
    } else {
      tokens.emplace_back("<?>");
    }
  }
  if (!decoder_) {
    std::string s;
    for (size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
    return s;
  }
  decoder_->decode_chain(tokens);
  std::string s;
  for (const auto& t : tokens) s += t;
  return s;
}

}  // namespace graft
