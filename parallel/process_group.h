// Process groups: the one collective interface every parallel layout uses.
//
// A ProcessGroup is a set of ranks (a sub-communicator of the world) with the collectives that
// tensor, sequence, context and data parallelism need. Three backends implement it:
//   - "local": a group of size 1 (a single process, or a layout dimension of size 1). Every
//     operation is an identity or a copy; no MPI needed.
//   - "mpi":   CPU tensors over MPI (so every layout runs in CI under mpirun on a CPU). For CUDA
//     tensors the same backend stages through pinned host buffers ("mpi-staged"): slow, but it
//     lets several ranks share one GPU, which NCCL refuses.
//   - "nccl":  CUDA tensors over NCCL, on the group's communication stream.
//
// Semantics (every backend; tensors contiguous; the reductions all_reduce and reduce_scatter
// take the dtypes of `supported_dtype`, the data movements any dtype, moved as bytes):
//   all_reduce(t, op)            t = op over ranks of t                       (in place)
//   all_gather(in, out)          out[r*n .. (r+1)*n) = in of group rank r     (n = in.numel())
//   reduce_scatter(in, out, op)  out = op over ranks of in[me*n .. (me+1)*n)  (n = out.numel())
//   broadcast(t, root)           t = t of group rank `root`
//   send_recv(ops)               batched point-to-point; all ops of the batch run together
//   barrier()
// kAvg divides the sum by size() (integers: truncating division). bf16/f16 sums accumulate in
// f32 on the MPI backend; NCCL sums in the dtype (as NCCL does).
//
// Asynchrony: with `async = true` the call may return before the data moved; the returned Work
// must be waited on before the tensors are read or reused. On CUDA, wait() orders the caller's
// current stream after the collective (it does not block the host). Backends that cannot overlap
// (mpi-staged) complete the work before returning. With async = false the call returns completed;
// on NCCL that means completed in stream order (later work on the caller's current stream sees
// the result; the host reads it through a copy, which synchronises). all_reduce_scalar and
// barrier block the host on every backend.
//
// Fault handling: every operation registers itself with the process's Watchdog (name, group,
// step, start time) for as long as it is in flight; see parallel/watchdog.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/tensor.h"

namespace graft {

enum class ReduceOp { kSum, kMax, kAvg };
const char* reduce_op_name(ReduceOp op);

class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

// A Work that is already complete.
std::unique_ptr<Work> completed_work();

struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind = Kind::kSend;
  Tensor tensor;  // contiguous; recv writes into it
  int peer = 0;   // group rank
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;  // this process's rank in the group
  virtual int size() const = 0;
  // The layout dimension this group spans, for messages: "world", "tp", "cp", "dp", "dp_cp", ...
  virtual const std::string& name() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi", "mpi-staged", "nccl"
  // World ranks of the group's members, in group-rank order.
  virtual const std::vector<int>& world_ranks() const = 0;

  virtual std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op, bool async = false) = 0;
  virtual std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out, bool async = false) = 0;
  virtual std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op,
                                               bool async = false) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual std::unique_ptr<Work> send_recv(const std::vector<P2POp>& ops, bool async = false) = 0;
  virtual void barrier() = 0;

  // Host scalars (logging: loss, grad norm, tokens/s): reduced as f64 across the group. The
  // default runs all_reduce on a CPU f64 tensor; backends without CPU tensors override it.
  virtual double all_reduce_scalar(double v, ReduceOp op);
};

// A group of size 1: identities and copies.
std::shared_ptr<ProcessGroup> make_local_group(const std::string& name);

// Checks shared by the backends: contiguous, matching dtypes, sizes that divide. Throws Error
// naming the operation, the group and the offending shapes.
void check_collective_args(const ProcessGroup& g, const char* op, const Tensor& in,
                           const Tensor* out, int64_t out_factor);

// The dtypes every backend reduces: f32, f64, bf16, f16, i32, i64, u8.
bool supported_dtype(DType t);
// Error naming the operation, the group and the dtype when `t` cannot be reduced.
void check_reduce_dtype(const ProcessGroup& g, const char* op, const Tensor& t);

}  // namespace graft
