// The model-level weight table: every parameter of a CausalLM with the Hugging Face tensors it is
// assembled from, absolute names on both sides and every piece length resolved. Loading, export,
// gradient export (graft parity) and seeded initialisation all read this one table.
//
// Model-level entries (data, below in weight_table.cpp):
//   embed_tokens.weight <- model.embed_tokens.weight
//   norm.weight         <- model.norm.weight
//   lm_head.weight      <- lm_head.weight            (untied models only)
//   layers.N.<p>        <- model.layers.N.<hf>       (each decoder layer's hf_weight_map())
// Dropped keys (present in some checkpoints, hold nothing the model uses) are listed explicitly:
//   model.rotary_emb.inv_freq, model.layers.*.self_attn.rotary_emb.inv_freq, and lm_head.weight
//   of a tied model (transformers ignores it too).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "framework/model/causal_lm.h"

namespace graft {

struct HfPiece {
  std::string hf_name;  // absolute: "model.layers.0.self_attn.q_proj.weight"
  int dim = 0;
  int64_t hf_start = 0, start = 0, length = 0;  // length resolved (never -1)
};

// Pieces are in the coordinates of the *global* parameter (its ShardSpec's global_shape; the
// local shape when the parameter is whole): weight maps describe the unsharded layout, and
// weight_slices.h derives the block of each HF tensor a rank's local tensor holds.
struct HfParamEntry {
  std::string param;  // absolute graft name: "layers.0.self_attention.qkv.weight"
  Parameter* parameter = nullptr;
  Shape shape;                  // the global parameter shape (global_param_shape)
  Shape logical;                // its unpadded part, which the pieces tile (logical_param_shape)
  std::vector<HfPiece> pieces;  // cover the logical parameter exactly once (checked)
};

// Whether `s` describes a local tensor shaped `local` (a hand-made Parameter may carry none).
bool spec_describes(const ShardSpec& s, const Shape& local);
// The global shape of `p` in the rank of its local tensor: the spec's global_shape, with the
// leading dimension a view adds merged back ([2, F, H] -> [2F, H]); the local shape when the spec
// does not describe the local tensor. logical_param_shape: the same of the logical shape.
Shape global_param_shape(const Parameter& p);
Shape logical_param_shape(const Parameter& p);

struct WeightTable {
  std::vector<HfParamEntry> params;        // in the model's parameter order
  std::vector<std::string> hf_names;       // every HF tensor, in first-use order
  std::map<std::string, Shape> hf_shapes;  // expected HF shape of each
};

// Builds the table; an internal Error when a layer's map misses or double-covers a parameter.
WeightTable build_weight_table(CausalLM& model);

// True when `hf_name` is a key the model deliberately drops (see the list above).
bool is_dropped_hf_key(const std::string& hf_name, const ModelConfig& config);
// The dropped-key patterns ('*' stands for a layer index) for documentation and errors.
std::vector<std::string> dropped_hf_key_patterns(const ModelConfig& config);

}  // namespace graft
