// The training loop.
//
// Per step: zero the gradients; for each of grad_accum micro-batches, draw batch_size sequences
// from the sampler and accumulate forward_backward(ids, labels = ids, grad_scale = 1/grad_accum);
// take the global gradient norm. If the loss or the norm is not finite the step is skipped (no
// parameter or optimizer state is touched), counted and logged, and more than
// train.max_consecutive_skips skips in a row end the run with an error. Otherwise the gradients
// are clipped to optim.grad_clip by global norm and AdamW takes a step with the schedule's lr.
// In one process on a GPU the step has no host sync until its end: the micro-batches' losses
// accumulate on the device, the norm stays there, and the AdamW kernel's prologue clips from it
// and skips the update when the norm or the loss is not finite (kernels/adamw.h); loss and norm
// are then read together once. The CPU and data-parallel runs keep the host path (same rule).
// Checkpoints every checkpoint.every steps and at the end; a sample at the end (train.sample_*:
// temperature 0.8, top-p 0.95, seeded with train.seed by default; temperature 0 = greedy).
//
// Evaluation (data.validation + eval, framework/train/evaluator.h): after every eval.every-th step
// and the last one, the mean loss over fixed held-out batches, forward only; the step is then
// logged with eval_loss. Metrics also carry mfu and peak_mem_gib (run_report.h); logging.
// tensorboard mirrors them as TensorBoard scalars. The run ends with a summary line (tokens,
// time, best eval and its step, the last checkpoint).
//
// Data parallelism (parallel.dp > 1, under mpirun): train.batch_size is per rank; the sampler
// hands data-parallel rank r its rows of the global batch a single process would draw, so the
// global batch is batch_size * grad_accum * dp. Gradients live in buckets (parallel/
// grad_buckets.h) averaged over dp during the last micro-batch's backward; with parallel.zero = 1
// each rank's optimizer updates only its shard and the parameters are all-gathered after the
// step. Loss and tokens/s are reduced over the ranks; only rank 0 prints and writes metrics.
//
// Context parallelism (parallel.cp > 1): the cp ranks of one data-parallel replica draw the same
// rows and each keeps its 2 of the 2·cp chunks of every row (framework/model/context_parallel.h;
// data.seq_len must be a multiple of 2·cp); attention is a ring over cp; the gradients of the
// (replicated) parameters are summed over dp × cp by the same buckets (group dp_cp).
//
// CUDA graph (train.cuda_graph, one process on a GPU): the same device step with AdamW's lr and
// step count staged in device memory and each micro-batch copied into fixed device buffers; after
// two eager steps it is captured once and replayed while its shapes (batch, seq_len, grad_accum)
// stay the same; the step's counted-target total reaches the loss kernels through device memory
// too (cuda_graph_step.h). Evaluation, logging and checkpoints run eagerly between replays.
//
// Resume: checkpoint.resume picks a checkpoint (auto = newest complete one in checkpoint.dir);
// its config hash must equal this recipe's (else InputError naming the first differing key), and
// model, optimizer state, step and data position are restored, so a resumed run continues
// bit-identically on the CPU.
#pragma once

#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/data/sampler.h"
#include "framework/data/tokenizer.h"
#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"
#include "framework/recipe/recipe.h"
#include "framework/train/checkpoint.h"
#include "framework/train/evaluator.h"
#include "framework/train/progress.h"
#include "framework/train/run_report.h"
#include "parallel/grad_buckets.h"
#include "parallel/parallel_state.h"

namespace graft {

struct TrainOptions {
  std::string metrics_out;  // JSONL file ("" = none)
  std::ostream* out = &std::cout;
  bool live_line = false;  // progress mode auto resolves to this (a terminal)
  // Called after the backward pass of each step, before the norm: tests use it to inject faults.
  std::function<void(int64_t step, CausalLM& model)> after_backward;
  // How each step's gradients are zeroed (unset: GRAFT_GRAD_ZEROING, else lazy); tests compare
  // the lazy and poisoned modes with the eager fill.
  std::optional<GradZeroing> grad_zeroing;
};

struct TrainResult {
  std::vector<StepMetrics> steps;  // every step run in this invocation
  std::string resumed_from;        // "" for a fresh start
  std::string last_checkpoint;
  std::string sample;  // decoded end-of-run sample ("" when disabled)
  double wall_s = 0;
  std::vector<std::pair<int64_t, double>> evals;  // (step, eval loss) of each evaluation
  std::string summary;                            // the closing paragraph (format_summary)
  // train.cuda_graph: graph replays among the steps, and why steps ran eagerly for good ("" when
  // the graph ran, or was not asked for).
  int64_t cuda_graph_replays = 0;
  std::string cuda_graph_reason;
};

class Trainer {
 public:
  // Prepares data (first use), builds and initialises or loads the model, and resumes.
  Trainer(Recipe recipe, TrainOptions options);
  ~Trainer();
  TrainResult run();

  CausalLM& model() { return *model_; }
  AdamW& optimizer() { return *optim_; }
  const TrainerState& state() const { return state_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ParallelGroups& groups() const { return *groups_; }
  const GradBuckets& buckets() const { return *buckets_; }
  const Evaluator* evaluator() const { return evaluator_.get(); }  // nullptr without validation

 private:
  void check_resume(const std::string& checkpoint);  // same recipe, else InputError
  void resume(const std::string& checkpoint);        // optimizer state, step, data position
  // Restores the FP8 scaling state (precision.fp8.recipe: delayed) from fp8/<slot>.* tensors, or
  // says that the histories start fresh when the checkpoint has none.
  void resume_fp8(const std::string& ckpt);
  std::string save(TrainResult& result);
  std::string layout_summary() const;  // ", 2 ranks (tp 1, cp 1, dp 2, mpi), ZeRO-1; ..." or ""

  Recipe recipe_;
  TrainOptions options_;
  std::shared_ptr<const ParallelGroups> groups_;
  std::unique_ptr<GradBuckets> buckets_;
  bool is_rank0_ = true;
  std::string data_dir_;
  std::unique_ptr<TokenDataset> dataset_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<Evaluator> evaluator_;  // nullptr without data.validation
  MfuMeter mfu_;
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<AdamW> optim_;
  LrSchedule schedule_;
  TrainerState state_;
  std::string resumed_from_;
};

}  // namespace graft
