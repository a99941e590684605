// The watchdog: no distributed run hangs silently.
//
// One thread per process (started by Watchdog::start) watches every collective in flight: its
// name, group, step and start time. When one has been in flight longer than the timeout
// (parallel.timeout_s), or a registered poller reports an error (NCCL's asynchronous errors via
// ncclCommGetAsyncError), it prints ONE line to stderr
//   rank 1: collective all_reduce on group dp (2 ranks, mpi) at step 3 has not completed after
//   600.0 s (parallel.timeout_s = 600); aborting the job
// runs the abort hooks (ncclCommAbort on every communicator) and ends the process with exit
// code 3, so mpirun / srun tear the job down. SIGTERM / SIGINT (what mpirun sends the surviving
// ranks when one dies) print which collective was in flight, then exit with 128 + signal.
//
// Cost per collective: one mutex and one map insert (begin) and erase (end). Nothing is printed
// while every collective completes within the timeout. The thread never calls MPI, so
// MPI_THREAD_SERIALIZED is enough.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace graft {

class Watchdog {
 public:
  static Watchdog& instance();  // process-wide: collectives of every group report here

  // Starts the thread (idempotent; a later call updates the timeout). rank labels messages.
  void start(double timeout_s, int world_rank);
  bool running() const;

  // Registers a collective in flight; returns its id for end().
  uint64_t begin(const char* op, const std::string& group, int group_size,
                 const std::string& backend);
  void end(uint64_t id);
  void set_step(int64_t step);

  // Run before exiting on a fault (e.g. ncclCommAbort of every communicator).
  uint64_t add_abort_hook(std::function<void()> hook);
  // Called about every 100 ms from the watchdog thread; a non-empty result is a fatal error
  // message (e.g. an NCCL asynchronous error). A poller may call end() (a collective it saw
  // complete on the device).
  uint64_t add_poller(std::function<std::string()> poller);
  // Unregister (a communicator being destroyed). Once they return, the hook or poller is not
  // running and never runs again.
  void remove_abort_hook(uint64_t id);
  void remove_poller(uint64_t id);

 private:
  Watchdog() = default;
  struct Impl;
  static Impl* impl();
};

// RAII registration of one collective with the watchdog.
class CollectiveScope {
 public:
  CollectiveScope(const char* op, const std::string& group, int group_size,
                  const std::string& backend)
      : id_(Watchdog::instance().begin(op, group, group_size, backend)) {}
  ~CollectiveScope() { Watchdog::instance().end(id_); }
  CollectiveScope(const CollectiveScope&) = delete;
  CollectiveScope& operator=(const CollectiveScope&) = delete;

 private:
  uint64_t id_;
};

}  // namespace graft
