// Deterministic sampling of fixed-length training sequences.
//
// The token stream (a TokenDataset: documents, each [BOS] tokens EOS, see token_shard.h) is cut
// into n = floor((total - 1) / seq_len) windows of seq_len + 1 tokens that overlap by one: window
// k holds tokens off_e + k·seq_len .. off_e + (k+1)·seq_len, its first seq_len tokens are the
// inputs and its last seq_len the targets, so within an epoch every token after off_e is a
// target exactly once (none is lost at a window edge). off_e in [0, total - 1 - n·seq_len] is
// drawn from the seed; epoch e visits the windows in a seeded Fisher-Yates order. Global
// sequence g is window perm_e[g mod n] of epoch e = g / n, so sequence g depends only on
// (dataset, seq_len, seed, g).
//
// Targets that are not counted (-100): a target whose input token is EOS (it belongs to the next
// document: the loss never crosses a document boundary, so a BOS is never a target), and, when
// the dataset has a loss mask (SFT), the tokens the mask excludes (prompts).
// document_mask: each row also carries document ids (a new id after every EOS) and positions
// restarting at 0 at each document start, so attention stays within a document.
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
#include "framework/model/lm_inputs.h"

namespace graft {

struct SamplerConfig {
  int64_t seq_len = 256;
  uint64_t seed = 0;
  int rank = 0;
  int world = 1;
  bool document_mask = false;
};

class Sampler {
 public:
  // InputError when the dataset holds fewer than seq_len + 1 tokens (outside `exclude`).
  // exclude: token ranges [begin, end) of the dataset never sampled; sorted, disjoint.
  Sampler(const TokenDataset* data, SamplerConfig config,
          const std::vector<std::pair<int64_t, int64_t>>& exclude = {});

  // This rank's slice of the next batch · world global sequences: input_ids, targets,
  // num_targets, and with document_mask positions and segment_ids ([batch, seq_len] each).
  LmInputs next(int64_t batch);
  // Tokens of global sequence g (seq_len + 1 of them: inputs, then the last target).
  void sequence(uint64_t g, int64_t* out);
  // Window g as a one-row batch (what next() builds for each row).
  void fill_row(uint64_t g, int64_t* ids, int64_t* targets, int64_t* positions, int64_t* segments,
                int64_t* counted);

  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }
  int64_t windows_per_epoch() const { return windows_; }
  int64_t stream_tokens() const { return total_; }  // the dataset less the excluded ranges

 private:
  void prepare_epoch(uint64_t e);
  int64_t window_start(uint64_t g);  // in the stream (the dataset less the excluded ranges)
  // [begin, begin + n) of the stream: tokens, or the loss mask.
  void read(int64_t begin, int64_t n, int64_t* out) const;
  void read_mask(int64_t begin, int64_t n, uint8_t* out) const;

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
  std::vector<int64_t> tokens_;  // scratch: one window
  std::vector<uint8_t> mask_;    // scratch: its loss mask
};

// SplitMix64: the stateless mixer used to derive per-epoch seeds.
uint64_t splitmix64(uint64_t x);

}  // namespace graft
