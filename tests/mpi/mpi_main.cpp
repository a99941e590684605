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
#include <gtest/gtest.h>
#include <mpi.h>

#include <csignal>
#include <cstring>
#include <string>

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
