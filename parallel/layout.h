// The parallel layout of a run: recipe section `parallel`.
//
//   parallel:
//     tp: 1                 # tensor-parallel size
//     cp: 1                 # context-parallel size
//     dp: 0                 # data-parallel size; 0 (or absent) = world / (tp * cp)
//     sequence_parallel: false
//     order: tp-cp-dp       # fastest-varying dimension first: rank = tp_r + tp*(cp_r + cp*dp_r)
//     zero: 0               # 1 = distributed optimizer (ZeRO-1) over dp
//     bucket_mb: 25         # gradient bucket size for the data-parallel reduction
//     timeout_s: 600        # a collective in flight longer than this ends the job
//     backend: auto         # auto | nccl | mpi  (auto: NCCL for CUDA tensors, MPI for CPU)
//
// tp * cp * dp must equal the world size (checked by make_parallel_groups against the world).
#pragma once

#include <cstdint>
#include <string>

namespace graft {

struct ParallelConfig {
  int64_t tp = 1, cp = 1, dp = 0, pp = 1;
  bool sequence_parallel = false;
  std::string order = "tp-cp-dp";
  int64_t zero = 0;
  double bucket_mb = 25.0;
  double timeout_s = 600.0;
  std::string backend = "auto";
};

}  // namespace graft
