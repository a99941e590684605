// One NCCL communicator with its communication stream, as the NCCL process group and the
// watchdog share it (internal to parallel/cuda).
//
// Communicators are non-blocking (config.blocking = 0): every NCCL call may return
// ncclInProgress, and settle() polls ncclCommGetAsyncError until it is not, so no thread is ever
// stuck inside NCCL where ncclCommAbort could not reach it. Each enqueued collective stays
// registered with the Watchdog until the event recorded after it on the communication stream
// has completed on the device: the watchdog thread's poller checks those events (and
// ncclCommGetAsyncError) about every 100 ms, and the main thread reaps completed ones whenever
// it enqueues more. So a collective that never finishes on the GPU ends the job after
// parallel.timeout_s even though nothing on the host waits for it. The abort hook calls
// ncclCommAbort.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

namespace graft::nccl {

// A cudaEvent_t without timing, destroyed with its last owner.
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class Comm {
 public:
  // Takes ownership of `comm` (already settled). Creates the communication stream on `device`
  // and registers the watchdog poller and abort hook.
  Comm(ncclComm_t comm, int device, std::string group, int size);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  ncclComm_t get() const { return comm_; }
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }

  // Polls until `r` (the result of an NCCL call on this communicator) is no longer
  // ncclInProgress; returns the final result.
  ncclResult_t settle(ncclResult_t r);
  // "ncclAllReduce on group tp (2 ranks, nccl) failed: <reason> (<NCCL's last error>)".
  std::string describe_error(const char* call, ncclResult_t r) const;

  // Remembers the watchdog registration `watchdog_id` until `done` has completed.
  void add_pending(std::shared_ptr<Event> done, uint64_t watchdog_id);
  // The watchdog poller: a fatal error message, or "" (and completed collectives unregistered).
  std::string poll();

 private:
  // Ends the registrations of completed collectives; returns a CUDA error message or "".
  std::string reap();

  struct Pending {
    std::shared_ptr<Event> done;
    uint64_t watchdog_id;
  };

  ncclComm_t comm_;
  int device_;
  std::string group_;
  int size_;
  cudaStream_t stream_ = nullptr;
  std::mutex mu_;
  std::deque<Pending> pending_;
  uint64_t poller_id_ = 0, hook_id_ = 0;
};

// Settles a freshly created (or split) communicator; Error on failure.
void settle_new(ncclComm_t comm, ncclResult_t r, const char* call, const std::string& group);

}  // namespace graft::nccl
