// The watchdog in a child process (gtest death tests, "threadsafe" style: the child re-runs
// this binary, so it starts with no watchdog thread): a stuck collective ends the process with
// exit code 3 and one line naming it; pollers and SIGTERM do the same; nothing is printed while
// collectives complete.
#include "parallel/watchdog.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

namespace graft {
namespace {

class WatchdogDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

TEST_F(WatchdogDeathTest, StuckCollectiveExitsWithCode3AndNamesIt) {
  EXPECT_EXIT(
      {
        Watchdog& w = Watchdog::instance();
        w.start(0.5, 1);
        w.add_abort_hook([] { ::write(2, "abort hook ran\n", 15); });
        w.set_step(3);
        CollectiveScope scope("all_reduce", "dp", 2, "mpi");
        sleep_s(20);
      },
      ::testing::ExitedWithCode(3),
      "^rank 1: collective all_reduce on group dp \\(2 ranks, mpi\\) at step 3 has not completed "
      "after [0-9.]+ s \\(parallel\\.timeout_s = 0\\.5\\); aborting the job\nabort hook ran\n$");
}

TEST_F(WatchdogDeathTest, NamesTheOldestCollectiveInFlight) {
  EXPECT_EXIT(
      {
        Watchdog& w = Watchdog::instance();
        w.start(0.5, 0);
        CollectiveScope first("reduce_scatter", "dp_cp", 4, "nccl");
        sleep_s(0.2);
        CollectiveScope second("all_gather", "tp", 2, "nccl");
        sleep_s(20);
      },
      ::testing::ExitedWithCode(3), "collective reduce_scatter on group dp_cp \\(4 ranks, nccl\\)");
}

TEST_F(WatchdogDeathTest, PollerErrorIsFatal) {
  EXPECT_EXIT(
      {
        Watchdog& w = Watchdog::instance();
        w.start(600, 2);
        CollectiveScope scope("all_reduce", "tp", 2, "nccl");
        w.add_poller([] { return std::string("NCCL asynchronous error on group tp: remote"); });
        sleep_s(20);
      },
      ::testing::ExitedWithCode(3),
      "^rank 2: NCCL asynchronous error on group tp: remote \\(in flight: collective all_reduce on "
      "group tp \\(2 ranks, nccl\\)\\); aborting the job\n$");
}

TEST_F(WatchdogDeathTest, SigtermSaysWhatWasInFlight) {
  EXPECT_EXIT(
      {
        Watchdog& w = Watchdog::instance();
        w.start(600, 1);
        w.set_step(7);
        CollectiveScope scope("all_reduce", "world", 4, "mpi");
        std::raise(SIGTERM);
        sleep_s(20);
      },
      ::testing::ExitedWithCode(128 + SIGTERM),
      "^rank 1: received SIGTERM while collective all_reduce on group world \\(4 ranks, mpi\\) at "
      "step 7 was in flight; exiting\n$");
}

TEST_F(WatchdogDeathTest, QuietWhileCollectivesComplete) {
  EXPECT_EXIT(
      {
        Watchdog& w = Watchdog::instance();
        w.start(0.3, 0);
        const uint64_t p = w.add_poller([] { return std::string(); });
        for (int i = 0; i < 2000; ++i) {
          CollectiveScope scope("all_reduce", "dp", 2, "mpi");
        }
        const uint64_t bad = w.add_poller([] { return std::string("must not run"); });
        w.remove_poller(bad);
        w.remove_poller(p);
        sleep_s(1.0);  // several poll intervals and more than the timeout, nothing in flight
        ::write(2, "clean", 5);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "^clean$");
}

TEST(Watchdog, BeginEndWithoutTheThread) {
  // Registration works (and costs little) whether or not the thread runs in this process.
  Watchdog& w = Watchdog::instance();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100000; ++i) {
    CollectiveScope scope("all_reduce", "dp", 2, "mpi");
  }
  const double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
      1e5;
  EXPECT_LT(us, 20.0) << "per begin/end pair";
  (void)w;
}

}  // namespace
}  // namespace graft
