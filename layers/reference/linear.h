// Reference Linear: y = x · Wᵀ (+ b), HF nn.Linear layout.
//
//   weight: [out_features, in_features]   bias (optional): [out_features]
//   forward:  x [..., in] -> y [..., out]   (leading dims flattened to rows)
//   backward: dx = dy · W (written);  dW += dyᵀ · x;  db += Σ_rows dy
//
// Tensor parallelism (parallel_mode, over the build context's tp group of T ranks; sizes are the
// global ones, each rank holds its slice and declares it in its ShardSpec):
//   "column": weight rows split: this rank holds W[o0 : o0+n, :] (and b[o0 : o0+n]), n = out / T
//             from rank·n unless out_local says otherwise (replicated KV heads, padded vocab).
//             Input: copy_to_tp (whole x on every rank; backward all-reduce of dx, started before
//             the weight-gradient GEMM and waited after, so they overlap on a GPU) or, with
//             sequence_parallel, gather_from_sp (x is this rank's sequence shard). Output: this
//             rank's columns of y (never gathered).
//   "row":    weight columns split: W[:, i0 : i0+in/T]; x holds this rank's columns of the
//             input. Output: reduce_from_tp (all-reduce) or, with sequence_parallel,
//             reduce_scatter_to_sp; the bias (whole on every rank) is added once, by tp rank 0
//             before the reduction.
// With sequence_parallel, x (column) and y (row) are [B, S/T, ...] shards
// (parallel/tp_collectives.h).
//
// Registered as "reference.linear" (Register<Linear, LinearConfig>).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "framework/registry/build_context.h"
#include "framework/registry/module.h"

namespace graft {

struct LinearConfig {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = false;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  std::string parallel_mode = "";  // "", "column" or "row"
  bool sequence_parallel = false;
  // Column mode only: this rank's rows [out_offset, out_offset + out_local) of the weight and its
  // replica index (ShardSpec::replica); out_local = 0: an even split. logical_out > 0: the real
  // (unpadded) out_features, recorded in the spec (padded vocabulary).
  int64_t out_local = 0, out_offset = 0, replica = 0, logical_out = 0;
  // Column mode: the number of tp ranks holding this same slice (> 1: a replicated KV head, whose
  // gradient is then summed over them: ShardSpec::grad_sum_over).
  int64_t replicas = 1;
};

class Linear : public Module {
 public:
  Linear(const LinearConfig& config, const BuildContext& ctx,
         const std::string& type = "reference.linear");
  explicit Linear(const LinearConfig& config, const std::string& type = "reference.linear");
  const LinearConfig& config() const { return config_; }
  int64_t local_in() const { return in_; }
  int64_t local_out() const { return out_; }

  // x: [..., in] -> [..., out] (local sizes). Saves x (a view, not a copy) when save != null.
  Tensor forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  // dy: [..., out] -> dx [..., in] (written); dW, db accumulated (+=).
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  LinearConfig config_;
  std::shared_ptr<ProcessGroup> tp_;
  int64_t in_ = 0, out_ = 0;
  bool column_ = false, row_ = false, sp_ = false;
};

}  // namespace graft
