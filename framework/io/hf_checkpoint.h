// Hugging Face checkpoint folders: config.json plus model.safetensors, or
// model.safetensors.index.json listing shards ({"metadata": {...}, "weight_map": {name: shard}}).
//
// Index validation: strict JSON (UTF-8, no duplicate keys: a tensor listed twice is an error),
// only "metadata" (an object) and "weight_map" (tensor name -> shard file) at the top level,
// shard names are plain file names (no '/', no '..'), every listed shard is an existing regular
// file; every tensor appears exactly once, in the shard it is listed under (checked per shard by
// open_shard, for all shards by validate()). Failures throw InputError naming the file (its
// subclass SafetensorsError for a shard's own format errors and index/shard disagreements).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/io/safetensors.h"

namespace graft {

class ShardedCheckpoint {
 public:
  // Opens DIR (with an index or a single model.safetensors). Throws InputError naming the file.
  static ShardedCheckpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& shards() const { return shards_; }  // file names, sorted
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }
  // Maps one shard (callers release it before opening the next to bound memory) and checks it
  // against the index in both directions: every tensor the index lists under this shard is in
  // it, and every tensor in it is listed under this shard. Throws SafetensorsError otherwise.
  std::shared_ptr<SafetensorsFile> open_shard(const std::string& shard) const;
  // Tensor names the index lists under `shard`, sorted.
  const std::vector<std::string>& shard_tensors(const std::string& shard) const;
  // Opens every shard once (one at a time) with open_shard's checks, so that the index and the
  // shards agree exactly: each tensor is in exactly one shard, the one the index names.
  void validate() const;

 private:
  std::string dir_;
  std::vector<std::string> shards_;
  std::map<std::string, std::string> weight_map_;
  std::map<std::string, std::vector<std::string>> shard_tensors_;
};

inline constexpr const char* kHfIndexFile = "model.safetensors.index.json";
inline constexpr const char* kHfSingleFile = "model.safetensors";

// Writes tensors as model-0000i-of-0000n.safetensors shards of at most max_shard_bytes each
// (a larger single tensor gets its own shard) plus model.safetensors.index.json, or a single
// model.safetensors when one shard suffices. Each file is written atomically.
void write_hf_shards(const std::string& dir,
                     const std::vector<std::pair<std::string, Tensor>>& tensors,
                     uint64_t max_shard_bytes);

// Streaming form (the same files): produce(i) is called once per tensor, shard by shard in each
// file's order (safetensors_file_order), and its result written before the next is asked for.
// With write = false nothing is written but produce is called in the same order: the ranks that
// help rank 0 gather each tensor run exactly its sequence of collectives.
void write_hf_shards_streaming(const std::string& dir, const std::vector<TensorMeta>& tensors,
                               const std::function<Tensor(size_t)>& produce,
                               uint64_t max_shard_bytes, bool write = true);

// Parses "5GB", "40KB", "2MiB", "1000" (bytes). InputError naming `what` otherwise.
uint64_t parse_byte_size(const std::string& s, const std::string& what);

}  // namespace graft
