// `graft bench --train-loop`: the recipe's own training loop, timed by the trainer (bench.h).
#include <algorithm>
#include <ostream>

#include "framework/core/device.h"
#include "framework/train/bench.h"
#include "framework/train/trainer.h"

namespace graft {

TrainLoopResult run_train_loop_bench(const Recipe& recipe, const BenchOptions& opt) {
  GRAFT_INPUT_CHECK(opt.steps >= 1 && opt.warmup >= 0, "steps = ", opt.steps,
                    ", warmup = ", opt.warmup, ", expected steps >= 1 and warmup >= 0");
  Recipe r = recipe;
  r.train.steps = opt.warmup + opt.steps;
  r.train.stop_after = 0;
  r.train.sample_tokens = 0;
  r.checkpoint.dir.clear();  // nothing written, nothing resumed
  r.checkpoint.resume = "none";
  r.checkpoint.every = 0;
  r.logging.tensorboard.clear();
  std::ostream null_out(nullptr);
  TrainOptions to;
  to.out = opt.log ? opt.log : &null_out;
  to.live_line = false;
  if (opt.log)
    *opt.log << "bench: the recipe's training loop: " << opt.warmup << " warm-up + " << opt.steps
             << " steps, grad_accum " << r.train.grad_accum << std::endl;
  if (r.device.is_cuda()) {
    device_backend().synchronize(r.device);
    device_backend().reset_peak(r.device);
  }
  Trainer t(r, to);
  const TrainResult tr = t.run();
  GRAFT_CHECK(static_cast<int64_t>(tr.steps.size()) == opt.warmup + opt.steps,
              "bench: the training loop ran ", tr.steps.size(), " steps, expected ",
              opt.warmup + opt.steps);
  // elapsed_s is taken at the end of each step (after its optimizer step): the timed window runs
  // from the end of the last warm-up step (or the loop's start) to the end of the last step.
  const double t0 = opt.warmup > 0 ? tr.steps[static_cast<size_t>(opt.warmup - 1)].elapsed_s : 0.0;
  const double dt = std::max(1e-12, tr.steps.back().elapsed_s - t0);
  TrainLoopResult res;
  res.warmup = opt.warmup;
  res.steps = opt.steps;
  res.grad_accum = r.train.grad_accum;
  res.ms_per_step = dt * 1e3 / static_cast<double>(opt.steps);
  const double tokens = static_cast<double>(r.train.batch_size * r.train.grad_accum *
                                            r.data.seq_len * t.groups().layout.dp);
  res.tokens_per_s = tokens * static_cast<double>(opt.steps) / dt;
  res.last_loss = tr.steps.back().loss;
  res.attention = tr.steps.back().attention;
  if (r.train.cuda_graph) {
    res.cuda_graph = tr.cuda_graph_reason.empty() && tr.cuda_graph_replays >= opt.steps;
    res.cuda_graph_reason = tr.cuda_graph_reason;
    if (!res.cuda_graph && res.cuda_graph_reason.empty())
      res.cuda_graph_reason = str("only ", tr.cuda_graph_replays, " of the ", opt.steps,
                                  " timed steps replayed the graph");
  }
  if (r.device.is_cuda())
    res.peak_mem_gib = static_cast<double>(device_backend().peak_bytes(r.device)) / (1ULL << 30);
  return res;
}

}  // namespace graft
