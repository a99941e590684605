// Loading Hugging Face checkpoints (config.json + model.safetensors or sharded safetensors with
// model.safetensors.index.json) into a CausalLM through the weight table (weight_table.h).
//
// Shards are read one at a time, memory-mapped, and released before the next is opened. Each rank
// copies only the blocks its parameters hold (weight_slices.h: its rows or columns of q/k/v,
// gate/up, o, down and of the vocabulary, from the parameters' ShardSpecs) straight from the
// mapping into the local tensors, so no rank materialises a full parameter; vocabulary padding
// rows are zeroed, never read. HfLoadStats measures what that costs (the mapped pages the kernel
// says this process touched, and the staging buffers). A parameter whose pieces (q/k/v, gate/up)
// sit in different shards is filled piece by piece over several shards; coverage is tracked per
// piece. bf16/f16/f64 tensors are converted to the parameter dtype. At the end every problem —
// missing tensors, unreadable shards, partly filled parameters, unexpected tensors, wrong shapes or
// dtypes — is reported in ONE InputError, each with its HF name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "framework/model/causal_lm.h"

namespace graft {

struct HfLoadOptions {
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  // The layout to build the model in (tp layers split their parameters; each rank then reads
  // only its blocks); null: a single process.
  std::shared_ptr<const ParallelGroups> groups;
  bool fp32_residual = false;  // BuildContext::fp32_residual (precision.residual: f32)
};

struct HfLoadStats {
  int64_t shards_read = 0;
  int64_t tensors_read = 0;
  uint64_t total_shard_bytes = 0;  // sum of the shard file sizes
  uint64_t largest_shard_bytes = 0;
  // HF tensor bytes this rank copied out of the shards: the sum of its blocks (in the file dtype).
  uint64_t bytes_read = 0;
  // Measured by the kernel: the most bytes of the mapped shard resident in this process
  // (SafetensorsFile::resident_bytes, read after each tensor's blocks are copied; the tensor's
  // pages are then released, and one shard is mapped at a time). As coarse as the kernel maps:
  // 64 KiB fault-around windows of small pages, or whole page-cache folios of up to 2 MiB
  // (PMD-mapped) where the file system caches large folios (ext4 on Linux 6.x). So a row slice
  // costs its bytes plus a window or folio at each end, while a column slice of a matrix whose
  // rows are shorter than that costs the pages of the whole matrix (clean page-cache pages,
  // shared with the other ranks of the node).
  uint64_t peak_mapped_bytes = 0;
  // The most bytes of host staging buffers held at once (blocks for GPU parameters).
  uint64_t peak_buffer_bytes = 0;
  // peak_mapped_bytes + peak_buffer_bytes: the loader's host memory beyond the parameters.
  uint64_t peak_host_bytes() const { return peak_mapped_bytes + peak_buffer_bytes; }
};

// Reads DIR/config.json (and the eos_token_id of DIR/generation_config.json when present, which
// is what transformers' generate stops on), builds the model (override scopes in force apply)
// and loads the weights.
std::unique_ptr<CausalLM> load_hf_model(const std::string& dir, const HfLoadOptions& opt = {},
                                        HfLoadStats* stats = nullptr);

// Sets c.eos_token_ids from DIR/generation_config.json when that file has eos_token_id.
void read_generation_config(const std::string& dir, ModelConfig& c);

// Loads the tensors of the checkpoint in DIR into an existing model.
HfLoadStats load_hf_weights(CausalLM& model, const std::string& dir);

// Seeded initialisation in HF space: every HF tensor is drawn from its own stream (seed, HF name)
// — normal(0, initializer_range) for matrices, zeros for biases, ones (zeros for (1 + w) norms)
// for norm weights — and loaded through the weight table, so a model gets the same weights with
// either layer set and any parameter layout.
void init_hf_weights(CausalLM& model, uint64_t seed);

}  // namespace graft
