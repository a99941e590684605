// Hand-made tensor-parallel sharding for the loading and export tests (no tp layers needed): the
// parameters of a single-process model are replaced by "rank r of n" local tensors with the
// ShardSpecs a tensor-parallel layer declares (framework/core/parameter.h), and the slices those
// tensors must hold are cut out of a whole tensor by hand, one rule per parameter kind:
//   column-parallel (dim 0)  q_proj, gate_proj, up_proj
//   te fc1                   [gate rows of r; up rows of r]: viewed as [2, F, H], split dim 1
//   KV (dim 0)               k_proj, v_proj: 1/n of the KV heads, or (n > KV heads) head r/(n/hkv),
//                            replica r % (n/hkv)
//   te fused qkv (dim 0)     the KV groups of r (n <= KV heads only, as te's layers require)
//   row-parallel (dim 1)     o_proj, down_proj; te proj, fc2
//   vocabulary (dim 0)       embed_tokens, lm_head padded to round_up(V + 1, n) rows (so there
//                            always is padding; logical shape [V, H]): rows [r·Vp/n, (r+1)·Vp/n),
//                            zero past V
//   everything else          whole (norms, q/k norms, row-parallel biases)
#pragma once

#include <string>

#include "framework/core/parameter.h"
#include "framework/model/causal_lm.h"

namespace graft::test {

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
inline bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

enum class ShardKind { kWhole, kColumn, kKv, kFc1, kQkv, kRow, kVocab };

inline ShardKind shard_kind(const std::string& name) {
  if (name == "embed_tokens.weight" || name == "lm_head.weight") return ShardKind::kVocab;
  if (has(name, "layer_norm") || has(name, "norm.")) return ShardKind::kWhole;
  if (has(name, "layernorm_qkv.weight") || has(name, "layernorm_qkv.bias")) return ShardKind::kQkv;
  if (has(name, "fc1_")) return ShardKind::kFc1;
  if (has(name, "q_proj.") || has(name, "gate_proj.") || has(name, "up_proj."))
    return ShardKind::kColumn;
  if (has(name, "k_proj.") || has(name, "v_proj.")) return ShardKind::kKv;
  if (ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight") ||
      ends_with(name, "proj.weight") || ends_with(name, "fc2_weight"))
    return ShardKind::kRow;
  return ShardKind::kWhole;
}

struct Heads {
  int64_t q = 0, kv = 0, dim = 0;
};
inline Heads heads_of(const ModelConfig& c) {
  return {c.decoder.num_attention_heads, c.decoder.num_kv_heads, c.decoder.head_dim};
}
inline int64_t padded_vocab(int64_t v, int n) { return (v + 1 + n - 1) / n * n; }

// The spec and local shape of `name` (global shape `g`) at rank r of n.
inline ShardSpec shard_spec(const std::string& name, const Shape& g, const Heads& h, int r, int n,
                            Shape* local) {
  *local = g;
  auto split = [&](int dim, int64_t offset, int64_t len) {
    (*local)[dim] = len;
    return ShardSpec::split(g, dim, LayoutGroup::kTP, offset);
  };
  const bool rep = n > h.kv;  // KV heads replicated
  const int64_t kv_head = rep ? r / (n / h.kv) : 0;
  switch (shard_kind(name)) {
    case ShardKind::kWhole:
      return ShardSpec::replicated(g);
    case ShardKind::kColumn:
    case ShardKind::kQkv:
      return split(0, r * g[0] / n, g[0] / n);
    case ShardKind::kFc1: {  // [2F, ...] viewed as [2, F, ...], split along F
      Shape g3 = g, v3 = g;
      g3[0] = g[0] / 2;
      g3.insert(g3.begin(), 2);
      v3 = g3;
      v3[1] = g3[1] / n;
      (*local)[0] = g[0] / n;
      ShardSpec s = ShardSpec::split(g3, 1, LayoutGroup::kTP, r * g3[1] / n);
      s.view = v3;
      return s;
    }
    case ShardKind::kKv: {
      if (!rep) return split(0, r * g[0] / n, g[0] / n);
      ShardSpec s = split(0, kv_head * h.dim, h.dim);
      s.replica = r % (n / h.kv);
      return s;
    }
    case ShardKind::kRow:
      return split(1, r * g[1] / n, g[1] / n);
    case ShardKind::kVocab: {
      Shape padded = g;
      padded[0] = padded_vocab(g[0], n);
      local->at(0) = padded[0] / n;
      ShardSpec s = ShardSpec::split(padded, 0, LayoutGroup::kTP, r * padded[0] / n);
      s.logical_shape = g;
      return s;
    }
  }
  return ShardSpec::replicated(g);
}

// Replaces every parameter of `m` (whole, as built in one process) by its zeroed rank-r-of-n
// local tensor with its spec.
inline void shard_model(CausalLM& m, int r, int n) {
  const Heads h = heads_of(m.config());
  for (auto& [name, p] : m.named_parameters()) {
    Shape local;
    ShardSpec spec = shard_spec(name, p->value.shape(), h, r, n, &local);
    p->value = Tensor::zeros(local, p->value.dtype(), p->value.device());
    spec.check(local, name);
    p->spec = std::move(spec);
  }
}

inline Tensor cat0(const std::vector<Tensor>& parts) {
  Shape s = parts.at(0).shape();
  s[0] = 0;
  for (const Tensor& t : parts) s[0] += t.size(0);
  Tensor out = Tensor::zeros(s, parts[0].dtype());
  int64_t at = 0;
  for (const Tensor& t : parts) {
    out.slice(0, at, t.size(0)).copy_from(t);
    at += t.size(0);
  }
  return out;
}

// What rank r of n must hold of `name`, cut by hand from the whole (single-process) tensor.
inline Tensor expected_slice(const std::string& name, const Tensor& whole, const Heads& h, int r,
                             int n) {
  const Tensor w = whole.to(Device::cpu());
  const bool rep = n > h.kv;
  const int64_t kv_head = rep ? r / (n / h.kv) : 0;
  switch (shard_kind(name)) {
    case ShardKind::kWhole:
      return w.clone();
    case ShardKind::kColumn:
      return w.slice(0, r * w.size(0) / n, w.size(0) / n).clone();
    case ShardKind::kKv:
      return rep ? w.slice(0, kv_head * h.dim, h.dim).clone()
                 : w.slice(0, r * w.size(0) / n, w.size(0) / n).clone();
    case ShardKind::kFc1: {
      const int64_t f = w.size(0) / 2, part = f / n;
      return cat0({w.slice(0, r * part, part), w.slice(0, f + r * part, part)});
    }
    case ShardKind::kQkv:  // whole KV groups
      return w.slice(0, r * w.size(0) / n, w.size(0) / n).clone();
    case ShardKind::kRow:
      return w.slice(1, r * w.size(1) / n, w.size(1) / n).clone();
    case ShardKind::kVocab: {
      const int64_t vp = padded_vocab(w.size(0), n), len = vp / n, at = r * len;
      Shape s = w.shape();
      s[0] = len;
      Tensor out = Tensor::zeros(s, w.dtype());
      const int64_t real = std::max<int64_t>(0, std::min(at + len, w.size(0)) - at);
      if (real > 0) out.slice(0, 0, real).copy_from(w.slice(0, at, real));
      return out;
    }
  }
  return w.clone();
}

}  // namespace graft::test
