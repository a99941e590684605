#include "framework/model/weight_table.h"

#include <algorithm>
#include <tuple>

#include "framework/core/error.h"

namespace graft {
namespace {

// Model-level weight map (graft name <- HF name), the same for every architecture. A vocabulary
// padded for tensor parallelism has a logical shape of vocab_size rows: the pieces tile those.
const WeightMap& model_level_map() {
  static const WeightMap m = {
      {"embed_tokens.weight", {{"model.embed_tokens.weight"}}},
      {"norm.weight", {{"model.norm.weight"}}},
      {"lm_head.weight", {{"lm_head.weight"}}},
  };
  return m;
}

// `s` (a spec's shape, in the rank of its view) in the rank of the local tensor.
Shape merge_view(const Shape& s, size_t local_rank) {
  if (s.size() == local_rank) return s;
  GRAFT_CHECK(s.size() == local_rank + 1 && !s.empty(), "shard view of rank ", s.size(),
              " for a local tensor of rank ", local_rank, ": one leading dimension at most");
  Shape out(s.begin() + 1, s.end());
  out[0] *= s[0];
  return out;
}

bool match_pattern(const std::string& name, const std::string& pattern) {
  // '*' matches one or more decimal digits.
  size_t i = 0, j = 0;
  while (j < pattern.size()) {
    if (pattern[j] == '*') {
      size_t k = i;
      while (k < name.size() && std::isdigit(static_cast<unsigned char>(name[k]))) ++k;
      if (k == i) return false;
      i = k;
      ++j;
    } else {
      if (i >= name.size() || name[i] != pattern[j]) return false;
      ++i;
      ++j;
    }
  }
  return i == name.size();
}

// Fills in length = -1 pieces: up to the next piece along the same dim, or the parameter's end.
void resolve_lengths(HfParamEntry& e) {
  const Shape& shape = e.logical;
  for (HfPiece& p : e.pieces) {
    GRAFT_CHECK(p.dim >= 0 && p.dim < static_cast<int>(shape.size()), e.param, ": piece ",
                p.hf_name, " along dim ", p.dim, " of a parameter shaped ", shape_str(shape));
    if (p.length >= 0) continue;
    int64_t end = shape[p.dim];
    for (const HfPiece& q : e.pieces)
      if (q.dim == p.dim && q.start > p.start) end = std::min(end, q.start);
    p.length = end - p.start;
  }
}

// Internal check: pieces tile the parameter exactly once.
void check_coverage(const HfParamEntry& e) {
  const Shape& shape = e.logical;
  int64_t covered = 0;
  for (const HfPiece& p : e.pieces) {
    GRAFT_CHECK(p.start >= 0 && p.length > 0 && p.start + p.length <= shape[p.dim], e.param,
                ": piece ", p.hf_name, " [", p.start, ", +", p.length, ") outside ",
                shape_str(shape));
    covered += p.length * (shape_numel(shape) / shape[p.dim]);
  }
  bool one_dim = true;
  for (const HfPiece& p : e.pieces) one_dim = one_dim && p.dim == e.pieces[0].dim;
  if (one_dim && !e.pieces.empty()) {
    std::vector<std::pair<int64_t, int64_t>> iv;
    for (const HfPiece& p : e.pieces) iv.emplace_back(p.start, p.start + p.length);
    std::sort(iv.begin(), iv.end());
    int64_t at = 0;
    for (auto [a, b] : iv) {
      GRAFT_CHECK(a == at, e.param, ": weight map pieces leave a gap or overlap at ", at);
      at = b;
    }
    GRAFT_CHECK(at == shape[e.pieces[0].dim], e.param, ": weight map covers ", at, " of ",
                shape[e.pieces[0].dim]);
  }
  GRAFT_CHECK(covered == shape_numel(shape), e.param, ": weight map covers ", covered, " of ",
              shape_numel(shape), " elements");
}

void add_entries(WeightTable& t, Module& owner, const WeightMap& map, const std::string& prefix,
                 const std::string& hf_prefix, bool skip_absent) {
  for (const WeightMapEntry& me : map) {
    Parameter* p = nullptr;
    // Walk dotted names down the module tree.
    Module* m = &owner;
    std::string rest = me.param;
    for (size_t dot; m && (dot = rest.find('.')) != std::string::npos;) {
      m = m->child(rest.substr(0, dot));
      rest = rest.substr(dot + 1);
    }
    if (m) p = m->parameter(rest);
    if (!p) {
      GRAFT_CHECK(skip_absent, owner.type(), ": weight map names parameter '", me.param,
                  "' which does not exist");
      continue;
    }
    // The parameter and its parts (other boxes of the same logical tensor, ShardSpec::part_of):
    // the map's pieces, in the logical tensor's coordinates, serve them all.
    std::vector<std::pair<std::string, Parameter*>> held{{me.param, p}};
    const std::string path = me.param.substr(0, me.param.size() - rest.size());
    for (const auto& [n, q] : m->own_parameters())
      if (q.spec.part_of == rest) held.emplace_back(path + n, m->parameter(n));
    for (auto& [name, q] : held) {
      HfParamEntry e;
      e.param = prefix + name;
      e.parameter = q;
      e.shape = global_param_shape(*q);
      e.logical = logical_param_shape(*q);
      for (const WeightPiece& wp : me.pieces)
        e.pieces.push_back({hf_prefix + wp.hf_name, wp.dim, wp.hf_start, wp.start, wp.length});
      resolve_lengths(e);
      check_coverage(e);
      t.params.push_back(std::move(e));
    }
  }
}

}  // namespace

bool spec_describes(const ShardSpec& s, const Shape& local) {
  const Shape box = s.box_shape(local);
  return shape_numel(box) == shape_numel(local) && s.global_shape.size() == box.size() &&
         s.dims.size() == box.size() &&
         (s.logical_shape.empty() || s.logical_shape.size() == box.size());
}

Shape global_param_shape(const Parameter& p) {
  const Shape& local = p.value.shape();
  if (!spec_describes(p.spec, local)) return local;
  return merge_view(p.spec.global_shape, local.size());
}

Shape logical_param_shape(const Parameter& p) {
  const Shape& local = p.value.shape();
  if (!spec_describes(p.spec, local)) return local;
  const ShardSpec& s = p.spec;
  return merge_view(s.logical_shape.empty() ? s.global_shape : s.logical_shape, local.size());
}

WeightTable build_weight_table(CausalLM& model) {
  WeightTable t;
  add_entries(t, model, model_level_map(), "", "", /*skip_absent=*/true);
  const auto& layers = model.decoder_layers();
  for (size_t i = 0; i < layers.size(); ++i)
    add_entries(t, *layers[i], layers[i]->hf_weight_map(), str("layers.", i, "."),
                str("model.layers.", i, "."), /*skip_absent=*/false);
  // Every parameter mapped exactly once.
  std::map<const Parameter*, std::string> mapped;
  for (const HfParamEntry& e : t.params) {
    GRAFT_CHECK(mapped.emplace(e.parameter, e.param).second, "parameter ", e.param,
                " mapped twice");
  }
  for (const auto& [name, p] : model.named_parameters())
    GRAFT_CHECK(mapped.count(p), "parameter ", name, " (", p->value.str(),
                ") has no Hugging Face weight map entry");
  // Expected HF shapes: the parameter's shape with the piece dimension's extent.
  for (const HfParamEntry& e : t.params) {
    for (const HfPiece& p : e.pieces) {
      Shape s = e.logical;
      s[p.dim] = p.hf_start + p.length;
      auto [it, fresh] = t.hf_shapes.emplace(p.hf_name, s);
      if (fresh) {
        t.hf_names.push_back(p.hf_name);
      } else {
        Shape& have = it->second;
        GRAFT_CHECK(have.size() == s.size(), p.hf_name, ": inconsistent ranks in the weight map");
        for (size_t d = 0; d < s.size(); ++d)
          if (static_cast<int>(d) == p.dim) have[d] = std::max(have[d], s[d]);
      }
    }
  }
  // Canonical order, the same for every layer set: embeddings, layers by index (names sorted
  // within a layer), then the rest (final norm, LM head).
  auto key = [](const std::string& n) {
    const std::string lp = "model.layers.";
    if (n.rfind(lp, 0) == 0) {
      size_t end = n.find('.', lp.size());
      return std::make_tuple(1, std::stoll(n.substr(lp.size(), end - lp.size())), n);
    }
    return std::make_tuple(n.rfind("model.embed_tokens", 0) == 0 ? 0 : 2, 0ll, n);
  };
  std::stable_sort(t.hf_names.begin(), t.hf_names.end(),
                   [&](const std::string& a, const std::string& b) { return key(a) < key(b); });
  return t;
}

std::vector<std::string> dropped_hf_key_patterns(const ModelConfig& config) {
  std::vector<std::string> out = {"model.rotary_emb.inv_freq",
                                  "model.layers.*.self_attn.rotary_emb.inv_freq"};
  if (config.tie_word_embeddings) out.push_back("lm_head.weight");
  return out;
}

bool is_dropped_hf_key(const std::string& hf_name, const ModelConfig& config) {
  for (const std::string& p : dropped_hf_key_patterns(config))
    if (match_pattern(hf_name, p)) return true;
  return false;
}

}  // namespace graft
