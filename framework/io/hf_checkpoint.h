// Hugging Face checkpoint folders: config.json plus model.safetensors, or
// model.safetensors.index.json listing shards ({"metadata": {...}, "weight_map": {name: shard}}).
//
// Index validation: shard names are plain file names (no '/', no '..'), every listed shard
// exists, every tensor appears exactly once (in the index and in the shard it is listed under).
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
  // Maps one shard (callers release it before opening the next to bound memory).
  std::shared_ptr<SafetensorsFile> open_shard(const std::string& shard) const;

 private:
  std::string dir_;
  std::vector<std::string> shards_;
  std::map<std::string, std::string> weight_map_;
};

// Writes tensors as model-0000i-of-0000n.safetensors shards of at most max_shard_bytes each
// (a larger single tensor gets its own shard) plus model.safetensors.index.json, or a single
// model.safetensors when one shard suffices. Each file is written atomically.
void write_hf_shards(const std::string& dir,
                     const std::vector<std::pair<std::string, Tensor>>& tensors,
                     uint64_t max_shard_bytes);

// Parses "5GB", "40KB", "2MiB", "1000" (bytes). InputError naming `what` otherwise.
uint64_t parse_byte_size(const std::string& s, const std::string& what);

}  // namespace graft
