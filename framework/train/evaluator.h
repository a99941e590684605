// Evaluation on held-out data (data.validation and eval; see framework/data/validation.h).
//
// The validation windows (seq_len tokens each) are the held-out windows of the training data, or
// every window of the validation dataset (data.validation.path). An evaluation is the mean loss
// over eval.batches fixed batches of G = train.batch_size · dp sequences. Of the N windows,
// B · G are used, spread evenly: global sequence j < B · G is window j · N / (B · G), and batch b
// holds sequences [b · G, (b + 1) · G). Data-parallel rank r takes rows
// [r · batch_size, (r + 1) · batch_size) of each batch, as the sampler does; each rank's loss is
// the mean over its equal share of the targets, so the all-reduced mean of the ranks' means is
// the loss over the global batches, for any dp. With fewer than B · G windows, sequence j is
// window j mod N instead (announced by describe(): some windows then count twice).
//
// Forward only: no activations kept, no gradient written, no optimizer state or RNG touched, so
// the same weights give the same loss every time and training continues bit-identically whether
// or not it evaluates.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/data/token_shard.h"
#include "framework/model/causal_lm.h"
#include "framework/recipe/recipe.h"
#include "parallel/process_group.h"

namespace graft {

class Evaluator {
 public:
  // windows: token offsets in `data`. InputError (naming `file`) when there is none.
  Evaluator(std::shared_ptr<const TokenDataset> data, const std::vector<int64_t>& windows,
            int64_t seq_len, const EvalConfig& config, int64_t batch_size, int rank, int world,
            const std::string& file,
            std::string source);  // source: "of data.validation.path = ..."

  // i64 [batch_size, seq_len]: this rank's rows of validation batch b (b < eval.batches).
  Tensor batch(int64_t b) const;
  // Mean loss over the batches, averaged over `group` (every rank of it must call this).
  double evaluate(CausalLM& model, ProcessGroup& group) const;
  // After step `step` (1-based) of a run ending at `end`: eval.every divides it, or it is the end.
  bool due(int64_t step, int64_t end) const;
  // "eval: 4 batches of 8 x 256 tokens from 59 windows held out by data.validation.fraction ..."
  std::string describe() const;
  int64_t num_windows() const { return total_windows_; }

 private:
  std::shared_ptr<const TokenDataset> data_;
  std::vector<int64_t> starts_;  // the B · G windows used, in batch order
  int64_t seq_len_, batch_size_, total_windows_;
  EvalConfig config_;
  int rank_, world_;
  std::string source_;
};

// The evaluator of a recipe, nullptr without data.validation. `train` is the training dataset;
// validation text (data.validation.path as globs) is tokenized with its tokenizer into the data
// cache on first use, by rank 0 of `world` first. Collective when world has several ranks.
// `train` must outlive the evaluator.
std::unique_ptr<Evaluator> make_evaluator(const Recipe& r, const TokenDataset& train,
                                          ProcessGroup& world, int dp_rank, int dp_world);

}  // namespace graft
