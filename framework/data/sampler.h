// Deterministic sampling of fixed-length training sequences.
//
// The token stream (a TokenDataset: documents separated by EOS) is cut into
// n = floor(total / seq_len) windows of seq_len tokens. Epoch e uses the windows starting at
// off_e + k · seq_len (off_e in [0, total - n · seq_len], drawn from the seed) in an order given
// by a seeded Fisher-Yates permutation. Global sequence g is window perm_e[g mod n] of epoch
// e = g / n, so sequence g depends only on (dataset, seq_len, seed, g).
//
// Data parallelism: each optimizer micro-batch takes batch · world consecutive global sequences;
// rank r reads the r-th slice of `batch` of them, so ranks are disjoint and the global batch is
// the same for any world size. position() counts global sequences consumed: it is part of the
// checkpoint, and set_position() resumes exactly.
//
// Held-out tokens (a validation split: `exclude`) are never read: the stream above is then the
// concatenation of the tokens outside the excluded ranges.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/data/token_shard.h"

namespace graft {

struct SamplerConfig {
  int64_t seq_len = 256;
  uint64_t seed = 0;
  int rank = 0;
  int world = 1;
};

class Sampler {
 public:
  // InputError when the dataset holds fewer than seq_len tokens (outside `exclude`).
  // exclude: token ranges [begin, end) of the dataset never sampled; sorted, disjoint.
  Sampler(const TokenDataset* data, SamplerConfig config,
          const std::vector<std::pair<int64_t, int64_t>>& exclude = {});

  // i64 [batch, seq_len]: this rank's slice of the next batch · world global sequences.
  Tensor next(int64_t batch);
  // Tokens of global sequence g (seq_len of them).
  void sequence(uint64_t g, int64_t* out);

  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }
  int64_t windows_per_epoch() const { return windows_; }
  int64_t stream_tokens() const { return total_; }  // the dataset less the excluded ranges

 private:
  void prepare_epoch(uint64_t e);
  void read(int64_t begin, int64_t n, int64_t* out) const;  // [begin, begin + n) of the stream

  const TokenDataset* data_;
  SamplerConfig config_;
  int64_t windows_ = 0;
  int64_t total_ = 0;
  // The kept runs of the dataset: stream offset, dataset offset, length (one run without exclude).
  struct Run {
    int64_t at, begin, len;
  };
  std::vector<Run> runs_;
  uint64_t position_ = 0;
  uint64_t epoch_ = UINT64_MAX;
  int64_t offset_ = 0;
  std::vector<int64_t> perm_;
};

// SplitMix64: the stateless mixer used to derive per-epoch seeds.
uint64_t splitmix64(uint64_t x);

}  // namespace graft
