#include "parallel/cuda/nccl_comm.h"

#include <thread>

#include "framework/core/cuda/cuda_check.h"
#include "framework/core/error.h"
#include "parallel/watchdog.h"

namespace graft::nccl {

Event::Event() { GRAFT_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
Event::~Event() { cudaEventDestroy(e_); }

Comm::Comm(ncclComm_t comm, int device, std::string group, int size)
    : comm_(comm), device_(device), group_(std::move(group)), size_(size) {
  cuda::DeviceGuard g(device_);
  int least = 0, greatest = 0;
  GRAFT_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // High priority: communication kernels are few and others wait on them.
  GRAFT_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  Watchdog& wd = Watchdog::instance();
  poller_id_ = wd.add_poller([this] { return poll(); });
  hook_id_ = wd.add_abort_hook([this] { ncclCommAbort(comm_); });
}

Comm::~Comm() {
  Watchdog& wd = Watchdog::instance();
  wd.remove_poller(poller_id_);
  wd.remove_abort_hook(hook_id_);
  {
    // Destroying a communicator flushes its work: still watched, in case a peer is gone.
    CollectiveScope scope("ncclCommDestroy", group_, size_, "nccl");
    cuda::DeviceGuard g(device_);
    cudaStreamSynchronize(stream_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Pending& p : pending_) wd.end(p.watchdog_id);
      pending_.clear();
    }
    if (settle(ncclCommFinalize(comm_)) == ncclSuccess) ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }
}

ncclResult_t Comm::settle(ncclResult_t r) {
  while (r == ncclInProgress) {
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) return ncclInternalError;
  }
  return r;
}

std::string Comm::describe_error(const char* call, ncclResult_t r) const {
  return str(call, " on group ", group_, " (", size_,
             " ranks, nccl) failed: ", ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")");
}

void Comm::add_pending(std::shared_ptr<Event> done, uint64_t watchdog_id) {
  reap();  // keeps the list short when no watchdog thread runs
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back({std::move(done), watchdog_id});
}

std::string Comm::reap() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!pending_.empty()) {
    const cudaError_t e = cudaEventQuery(pending_.front().done->get());
    if (e == cudaErrorNotReady) return "";
    if (e != cudaSuccess) {
      return str("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                 ") on the communication stream of group ", group_, " (", size_, " ranks, nccl)");
    }
    Watchdog::instance().end(pending_.front().watchdog_id);
    pending_.pop_front();
  }
  return "";
}

std::string Comm::poll() {
  // The watchdog thread's current device: without this, its first CUDA call would create a
  // context on device 0 for every rank of the node.
  if (cudaSetDevice(device_) != cudaSuccess) return str("cudaSetDevice(", device_, ") failed");
  ncclResult_t r = ncclSuccess;
  const ncclResult_t q = ncclCommGetAsyncError(comm_, &r);
  if (q != ncclSuccess) r = q;
  if (r != ncclSuccess && r != ncclInProgress) {
    return str("NCCL asynchronous error on group ", group_, " (", size_,
               " ranks, nccl): ", ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")");
  }
  return reap();
}

void settle_new(ncclComm_t comm, ncclResult_t r, const char* call, const std::string& group) {
  while (r == ncclInProgress) {
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) break;
  }
  GRAFT_CHECK(r == ncclSuccess, call, " for group ", group, " failed: ", ncclGetErrorString(r),
              " (", ncclGetLastError(comm), ")");
}

}  // namespace graft::nccl
