// The MPI calls behind the "mpi" process group, on host memory (internal to parallel/).
//
// Every call is issued into a Pending: blocking MPI calls when the Pending is synchronous, the
// non-blocking ones (MPI_Iallreduce, ...) when it is asynchronous. What has to happen after the
// data moved (bf16/f16 converted back from the f32 scratch, a sum divided for kAvg, a chunked
// gather unpacked) is queued as `finish` steps, run by complete().
//
// Large counts: MPI counts are int. A call whose count times the group size would exceed
// max_count() (INT_MAX, or GRAFT_MPI_MAX_COUNT for tests) is split into chunks; gathers and
// reduce-scatters then go through packed scratch buffers.
//
// Reductions: f32, f64, i32, i64 and u8 reduce natively (MPI_SUM / MPI_MAX); bf16 and f16 are
// converted to f32 scratch, reduced in f32 and rounded once (so sums accumulate in f32 and the
// result does not depend on the reduction tree). kAvg = sum, then a division by the group size
// (integers: truncating). Data movement (gather, broadcast, point-to-point) is bytes.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "framework/core/dtype.h"
#include "parallel/process_group.h"

namespace graft::mpi {

int64_t max_count();

class Pending {
 public:
  Pending(MPI_Comm comm, bool async) : comm_(comm), async_(async) {}
  Pending(Pending&&) = default;
  Pending& operator=(Pending&&) = default;

  // Each takes host pointers; counts are elements of `dtype` (reductions) or bytes (movement).
  void all_reduce(void* data, int64_t n, DType dtype, ReduceOp op, int group_size);
  void all_gather(const void* in, void* out, int64_t bytes_per_rank, int group_size);
  void reduce_scatter(const void* in, void* out, int64_t n, DType dtype, ReduceOp op,
                      int group_size);
  void send(const void* data, int64_t bytes, int peer);
  void recv(void* data, int64_t bytes, int peer);

  // Waits for every request (MPI_Waitall) and runs the finish steps. Idempotent.
  void complete();
  bool async() const { return async_; }

 private:
  // Blocking: nothing to remember; non-blocking: the request is kept for complete().
  MPI_Request* next_request();
  void check(int rc, const char* call);
  void all_reduce_native(void* data, int64_t n, MPI_Datatype type, MPI_Op op);
  void reduce_scatter_native(const void* in, void* out, int64_t n, DType dtype, MPI_Op op,
                             int group_size);
  // Keeps `bytes` of scratch alive until complete() has run; returns it.
  void* scratch(size_t bytes);

  MPI_Comm comm_;
  bool async_;
  std::vector<MPI_Request> requests_;
  std::vector<std::function<void()>> finish_;
  std::vector<std::unique_ptr<uint8_t[]>> scratch_;
};

// t[i] /= group_size for n elements of a float or integer dtype (kAvg after a sum).
void divide_elements(void* data, int64_t n, DType dtype, int group_size);

// One MPI_Bcast of `bytes` (chunked); blocking.
void broadcast_bytes(MPI_Comm comm, void* data, int64_t bytes, int root);

}  // namespace graft::mpi
