// The steady-state training step captured once in a CUDA graph and replayed (train.cuda_graph).
//
//   CudaGraphStep g(device, say, refused);   // refused: a reason up front ("" = graphs allowed)
//   per step:  host work (stage AdamW's lr and step, copy the batch into fixed device buffers)
//              g.run(key, body)              // true: the step was a graph replay
//
// `body` queues the step's device work only: every value that changes from step to step must
// reach it through device memory written before run() (AdamW::stage_step, the input buffers),
// and it may not synchronise, read to the host or allocate outside the caching allocator.
// `key` lists the host values the body passes as launch arguments that a graph would freeze
// (the shapes). The first `warmup` steps with the same key run eagerly (every plan,
// workspace and cache made lazily then exists), the next is captured and replayed at once (the
// capture itself runs nothing), and every later step with that key replays the graph. A step with
// another key runs eagerly and leaves the graph in place. Graphs are off for good, with one log
// line saying why, when they were refused, when there is no graph backend (a CPU-only build), or
// when the capture or the instantiation fails ("CUDA graph: capture failed (...); the step runs
// eagerly"): that step then runs eagerly after on_discard (the host state a capture touched
// without running, e.g. FP8 weight copies that were never cast, must be invalidated).
// Memory: the graph's allocations live in its private pool (framework/core/device_graph.h), so
// eager work between replays (evaluation, checkpoints) never receives memory a replay writes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/device_graph.h"

namespace graft {

class CudaGraphStep {
 public:
  using Log = std::function<void(const std::string&)>;
  // backend: null = device_graph_backend(). log: one line when the graph is captured or given up
  // (null = silent).
  CudaGraphStep(Device device, Log log, std::string refused = "", int64_t warmup = 2,
                DeviceGraphBackend* backend = nullptr);
  ~CudaGraphStep();

  bool run(const std::vector<int64_t>& key, const std::function<void()>& body);
  // Whether run(key, ...) would replay the graph (it exists and was captured with this key).
  bool ready(const std::vector<int64_t>& key) const;
  void set_on_discard(std::function<void()> f) { on_discard_ = std::move(f); }
  // Runs just before the capture: host caches that let the body skip device work (FP8 weight
  // copies already cast this generation, e.g. by an evaluation after the last warm-up step) must
  // be invalidated here, or the graph would lack that work and replay stale buffers.
  void set_before_capture(std::function<void()> f) { before_capture_ = std::move(f); }

  bool captured() const { return graph_ != nullptr; }
  // Why steps run eagerly for good ("" while graphs are still possible).
  const std::string& fallback_reason() const { return reason_; }
  int64_t replays() const { return replays_; }
  int64_t eager_steps() const { return eager_; }
  size_t num_nodes() const { return graph_ ? graph_->num_nodes() : 0; }

 private:
  void give_up(const std::string& why);
  Device device_;
  Log log_;
  std::string reason_;
  int64_t warmup_;
  DeviceGraphBackend* backend_;
  std::unique_ptr<DeviceGraph> graph_;
  std::vector<int64_t> key_;  // of the warm-up steps so far, then of the graph
  int64_t warm_ = 0;          // eager steps in a row with key_
  int64_t replays_ = 0, eager_ = 0;
  bool mismatch_logged_ = false;
  std::function<void()> on_discard_;
  std::function<void()> before_capture_;
};

// Why train.cuda_graph cannot be used in this run ("" = it can): CPU device, several ranks, the
// FP8 profile (events read on the host), a test's fault hook.
struct CudaGraphConditions {
  Device device;
  int64_t world = 1;
  bool fp8_profile = false;
  bool fault_hook = false;  // TrainOptions::after_backward (tests)
};
std::string cuda_graph_refusal(const CudaGraphConditions& c);

}  // namespace graft
