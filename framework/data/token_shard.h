// Token shards: the on-disk form of a tokenized dataset.
//
// A shard file is a 32-byte little-endian header followed by the tokens:
//   offset  0  char[8]  magic "GRAFTTOK"
//   offset  8  u32      version (1)
//   offset 12  u32      bytes per token: 2 (u16) or 4 (u32); 1 (u8) for loss-mask shards
//   offset 16  u64      token count N
//   offset 24  u64      reserved, 0
//   offset 32  N tokens
// The file size must be exactly 32 + N · bytes_per_token. A dataset folder holds shards
// (shard-00000.bin, ...) and meta.json, written last:
//   {"format": "graft-tokens", "version": 1, "tokenizer": "byte" | "PATH/tokenizer.json",
//    "tokenizer_hash": "byte" | "fnv1a64:<hex of the file's bytes>", "vocab_size": V,
//    "eos_id": E, "bos_id": B (-1: none), "tokens": total, "documents": D,
//    "shards": ["shard-00000.bin", ...],
//    "loss_mask": ["shard-00000.mask.bin", ...]   (optional, SFT data: u8 per token, 1 = counted
//                                                  as a target, shard i covering shard i's tokens)
//    "key": the preparation cache key, "sources": [{path, type, field, weight, documents, tokens}]}
// Each document is [BOS] tokens EOS (BOS when the tokenizer has one distinct from EOS): the token
// after an EOS starts a new document.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace graft {

constexpr uint32_t kTokenShardVersion = 1;
constexpr size_t kTokenShardHeaderBytes = 32;

// Writes a shard atomically (temp file, fsync, rename). token_bytes: 1, 2 or 4; every token must
// fit (InputError naming the file and the token otherwise).
void write_token_shard(const std::string& path, const std::vector<int64_t>& tokens,
                       int token_bytes);

// A memory-mapped, validated shard.
class TokenShard {
 public:
  static std::shared_ptr<TokenShard> open(const std::string& path);
  ~TokenShard();
  int64_t size() const { return count_; }
  int token_bytes() const { return token_bytes_; }
  int64_t at(int64_t i) const;
  // Copies tokens [begin, begin + n) into out.
  void read(int64_t begin, int64_t n, int64_t* out) const;

 private:
  TokenShard() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  int64_t count_ = 0;
  int token_bytes_ = 0;
};

// A dataset folder: its shards, concatenated in order.
class TokenDataset {
 public:
  static TokenDataset open(const std::string& dir);
  int64_t size() const { return total_; }
  const std::string& tokenizer() const { return tokenizer_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t bos_id() const { return bos_id_; }
  // "byte" or "fnv1a64:..." (see tokenizer_hash()); "" in folders written before it was recorded.
  const std::string& tokenizer_hash() const { return tokenizer_hash_; }
  bool has_loss_mask() const { return !masks_.empty(); }
  // Loss-mask bytes [begin, begin + n) (1 = counted); requires has_loss_mask().
  void read_loss_mask(int64_t begin, int64_t n, uint8_t* out) const;
  const std::string& dir() const { return dir_; }
  // Copies tokens [begin, begin + n) of the concatenation (may span shards).
  void read(int64_t begin, int64_t n, int64_t* out) const;

 private:
  std::string dir_, tokenizer_, tokenizer_hash_;
  int64_t vocab_size_ = 0, eos_id_ = -1, bos_id_ = -1, total_ = 0;
  std::vector<std::shared_ptr<TokenShard>> shards_, masks_;
  std::vector<int64_t> starts_;  // first global index of each shard
};

}  // namespace graft
