// main() of graft_mpi_tests, the multi-rank test binary (run it under mpirun; see
// tests/mpi/CMakeLists.txt for the ctest entries).
//
// Every rank runs every test; rank 0 prints gtest's usual output, the other ranks print only
// their failures, prefixed "rank N: ". Every rank returns the same code: non-zero when a test
// failed on any rank.
//
// Fault mode (`graft_mpi_tests --fault=sigstop|sigkill`, driven by fault_test.sh): every rank
// loops all_reduce on the dp group with parallel.timeout_s = 5; at step 3 rank 1 stops (SIGSTOP)
// or kills (SIGKILL) itself. The other ranks must not hang: the watchdog ends them (exit 3), or
// mpirun's SIGTERM does (exit 143), with a line naming the collective and the group.
//
// A test that runs longer than GRAFT_MPI_TEST_TIMEOUT_S (default 300 s) ends the job: a rank
// whose test threw or returned early leaves the others waiting in a collective the test's own
// groups cannot time out (an MPI communicator split, a receive), so a per-test watchdog prints
// the test's name and calls MPI_Abort (stuck_test.sh checks it with
// MpiHarness.DISABLED_RankZeroWaitsForARankThatLeft).
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/launch.h"
#include "parallel/parallel_state.h"
#include "parallel/watchdog.h"

namespace {

// Failures only, with the rank: the non-zero ranks' gtest output. The test's name is kept from
// OnTestStart: UnitTest::current_test_info() takes the lock that AddTestPartResult holds while it
// calls OnTestPartResult, so asking for it there deadlocks the rank (a failure on a rank other
// than 0 then looked like a hang of the whole job).
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestStart(const ::testing::TestInfo& t) override {
    test_ = std::string(t.test_suite_name()) + "." + t.name();
  }
  void OnTestEnd(const ::testing::TestInfo&) override { test_ = "?"; }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "rank %d: %s failed at %s:%d\n%s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }

 private:
  int rank_;
  std::string test_ = "?";
};

// The per-test watchdog (above): a detached thread polling the running test's start time. Its
// state is never freed (the thread outlives main's return, and gtest deletes its listeners).
struct WatchdogState {
  std::mutex mu;
  std::string test;
  std::chrono::steady_clock::time_point start;
};

class TestWatchdog : public ::testing::EmptyTestEventListener {
 public:
  TestWatchdog(int rank, int limit_s) : st_(new WatchdogState) {
    std::thread([st = st_, rank, limit_s] { poll(st, rank, limit_s); }).detach();
  }
  void OnTestStart(const ::testing::TestInfo& t) override {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->test = std::string(t.test_suite_name()) + "." + t.name();
    st_->start = std::chrono::steady_clock::now();
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->test.clear();
  }

 private:
  static void poll(WatchdogState* st, int rank, int limit_s) {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      std::string test;
      double s = 0;
      {
        std::lock_guard<std::mutex> lock(st->mu);
        if (st->test.empty()) continue;
        s = std::chrono::duration<double>(std::chrono::steady_clock::now() - st->start).count();
        test = st->test;
      }
      if (s < limit_s) continue;
      std::fprintf(stderr,
                   "rank %d: %s still running after %d s (GRAFT_MPI_TEST_TIMEOUT_S): a rank "
                   "waits on one that left the test (see the other ranks' failures); ending "
                   "the job\n",
                   rank, test.c_str(), limit_s);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
  }

  WatchdogState* st_;
};

// What the watchdog is for: rank 0 waits for a message rank 1 never sends (rank 1 leaves the
// test at once). Disabled: stuck_test.sh runs it on purpose, with a 5 s limit.
TEST(MpiHarness, DISABLED_RankZeroWaitsForARankThatLeft) {
  if (graft::world_info().rank != 0) return;
  int x = 0;
  MPI_Recv(&x, 1, MPI_INT, 1, 4711, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

int run_fault(const std::string& kind) {
  using namespace graft;
  const WorldInfo& w = world_info();
  ParallelConfig c;
  c.timeout_s = 5;
  auto groups = make_parallel_groups(c, w, Device::cpu(), "fault-test");
  Tensor t = Tensor::zeros({1024}, DType::kF32);
  for (int64_t step = 0; step < 100000; ++step) {
    Watchdog::instance().set_step(step);
    if (step == 3 && w.rank == 1) {
      std::fprintf(stderr, "rank 1: fault test: raising %s at step 3\n", kind.c_str());
      std::raise(kind == "sigstop" ? SIGSTOP : SIGKILL);
    }
    groups->dp->all_reduce(t, ReduceOp::kSum);
  }
  std::fprintf(stderr, "rank %d: fault test: the loop ended without a fault\n", w.rank);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const graft::WorldInfo& w = graft::init_world(&argc, &argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--fault=", 8) == 0) return run_fault(argv[i] + 8);
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (w.mpi) {
    const char* e = std::getenv("GRAFT_MPI_TEST_TIMEOUT_S");
    const int limit = e && std::atoi(e) > 0 ? std::atoi(e) : 300;
    ::testing::UnitTest::GetInstance()->listeners().Append(new TestWatchdog(w.rank, limit));
  }
  if (w.rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(w.rank));
  }
  int rc = RUN_ALL_TESTS();
  if (w.mpi) {
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any != 0 && rc == 0 && w.rank == 0) {
      std::fprintf(stderr, "graft_mpi_tests: a test failed on another rank (see its output)\n");
    }
    rc = any;
  }
  return rc;
}
