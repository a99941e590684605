// Export to the Hugging Face layout through the weight table read in reverse: whichever layer set
// built the model, the tensors come out under HF names in HF layout (fused qkv / fc1 split back
// into q/k/v and gate/up). export_hf_checkpoint writes config.json (the original config with the
// fields graft owns updated), generation_config.json when token ids are known, and
// model-0000i-of-0000n.safetensors shards of at most max_shard_bytes with their index (or a
// single model.safetensors). Load -> export -> load is bit-exact in the parameter dtype, under
// any layout (the parameters' ShardSpecs say which blocks each rank holds).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "framework/model/causal_lm.h"
#include "framework/model/hf_gather.h"

namespace graft {

// config.json content for the model: its hf_config with model_type, architectures, sizes,
// tie_word_embeddings and dtype set from the ModelConfig (written from scratch in the Llama form
// when the model was not built from a config.json).
nlohmann::json hf_config_for_export(const ModelConfig& config, DType dtype);

struct HfExportOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // transformers' default "5GB"
  DType dtype = DType::kF32;              // f32, bf16 or f16
  // The groups the parameters' ShardSpecs refer to; null: the model's context.
  std::shared_ptr<const ParallelGroups> groups;
};

// Under a layout this is collective: world rank 0 writes the files, gathering each HF tensor
// from the ranks that hold its blocks just before writing it (HfGather, one tensor at a time);
// the files are the ones a single process writes, byte for byte.
void export_hf_checkpoint(CausalLM& model, const std::string& dir, const HfExportOptions& opt = {});

}  // namespace graft
