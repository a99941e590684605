// Tensor- and sequence-parallel region boundaries, named for their forward/backward pair (the
// mappings of Megatron-LM's tensor_parallel/mappings.py), over the tp ProcessGroup:
//
//   copy_to_tp            forward: identity           backward: all-reduce (sum)
//   reduce_from_tp        forward: all-reduce (sum)   backward: identity
//   gather_from_sp        forward: all-gather along the sequence   backward: reduce-scatter (sum)
//   reduce_scatter_to_sp  forward: reduce-scatter along the sequence   backward: all-gather
//
// copy_to_tp enters a column-parallel region (each rank computes its slice of the output from the
// whole input, so the input's gradient is the sum of every rank's partial one); reduce_from_tp
// leaves a row-parallel region (each rank holds a partial sum of the output). With sequence
// parallelism the activations between regions are sequence shards: gather_from_sp replaces
// copy_to_tp and reduce_scatter_to_sp replaces reduce_from_tp.
//
// Sequence layout: activations are [B, S, ...] (batch first, contiguous). Rank r of T holds
// positions [r·S/T, (r+1)·S/T) of every batch row: [B, S/T, ...]. A sequence length that T does not
// divide is an InputError naming both. The data moves through ProcessGroup (any backend, CPU or
// CUDA tensors) and the reordering between the rank-major collective buffers and [B, S, ...]
// through the copy_2d kernel, so nothing touches device memory from the host.
//
// Every function is collective over `g` (every rank calls it with the same shapes); with a group
// of size 1 every one is the identity.
#pragma once

#include <memory>

#include "framework/core/tensor.h"
#include "parallel/process_group.h"

namespace graft {

// Forward identity (returns x); the backward all-reduces dx over g in place and returns it.
Tensor copy_to_tp(const Tensor& x, ProcessGroup& g);
Tensor copy_to_tp_backward(Tensor dx, ProcessGroup& g);
// The backward started asynchronously (contiguous dx, reduced in place): wait on the Work before
// reading dx. A column-parallel linear starts it before its weight-gradient GEMM and waits after,
// so on a GPU with NCCL the all-reduce overlaps the GEMM.
std::unique_ptr<Work> copy_to_tp_backward_async(Tensor& dx, ProcessGroup& g);

// Forward: y summed over g in place (y contiguous), returned. Backward identity.
Tensor reduce_from_tp(Tensor y, ProcessGroup& g);
inline Tensor reduce_from_tp_backward(const Tensor& dy, ProcessGroup&) { return dy; }

// [B, S/T, ...] -> [B, S, ...] (new): every rank's shard in rank order along dim 1.
Tensor gather_from_sp(const Tensor& x, ProcessGroup& g);
// [B, S, ...] -> [B, S/T, ...] (new): this rank's shard of the sum over g.
Tensor gather_from_sp_backward(const Tensor& dy, ProcessGroup& g);
// [B, S, ...] partial sums -> [B, S/T, ...] (new): this rank's shard of their sum over g.
Tensor reduce_scatter_to_sp(const Tensor& y, ProcessGroup& g);
// [B, S/T, ...] -> [B, S, ...] (new).
Tensor reduce_scatter_to_sp_backward(const Tensor& dy, ProcessGroup& g);

// This rank's shard [B, S/T, ...] of x [B, S, ...] (a copy; no communication): where a replicated
// activation enters a sequence-parallel region (tests, and inputs every rank already holds).
Tensor sp_shard(const Tensor& x, ProcessGroup& g);
// InputError "what: sequence length S is not divisible by tp = T (sequence parallelism ...)".
void check_sp_divisible(int64_t seq, const ProcessGroup& g, const char* what);

}  // namespace graft
