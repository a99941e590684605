// The watchdog thread: a table of collectives in flight, pollers, abort hooks, and the
// SIGTERM / SIGINT handler. See watchdog.h for the contract.
//
// Locking: `table_mu` guards the in-flight table (taken by begin/end on the calling threads and
// briefly by the thread's scan); `hooks_mu` guards the pollers and abort hooks and is held while
// they run, so remove_poller() returning means the poller is not running. A poller may call
// end() (it takes only table_mu). The Impl is leaked on purpose: the thread is detached and may
// still run while static destructors do at exit.
#include "parallel/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "framework/core/error.h"

namespace graft {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPollInterval = std::chrono::milliseconds(100);

// Set by the signal handler; the thread notices it within one poll interval.
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_terminate_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

// One line on stderr with a single write(2) (no buffering, no interleaving with other lines).
void write_line(const std::string& line) {
  std::string s = line + "\n";
  const char* p = s.data();
  size_t left = s.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

struct Watchdog::Impl {
  struct Entry {
    const char* op;
    std::string group, backend;
    int group_size;
    int64_t step;
    Clock::time_point start;
  };

  std::mutex table_mu;
  std::unordered_map<uint64_t, Entry> in_flight;
  uint64_t next_id = 1;
  std::atomic<int64_t> step{-1};

  std::mutex hooks_mu;
  std::map<uint64_t, std::function<void()>> abort_hooks;
  std::map<uint64_t, std::function<std::string()>> pollers;
  uint64_t next_hook_id = 1;

  std::atomic<bool> running{false};
  std::atomic<double> timeout_s{600.0};
  std::atomic<int> rank{0};

  std::string prefix() const { return str("rank ", rank.load(), ": "); }

  static std::string describe(const Entry& e) {
    std::string s = str("collective ", e.op, " on group ", e.group, " (", e.group_size, " ranks, ",
                        e.backend, ")");
    if (e.step >= 0) s += str(" at step ", e.step);
    return s;
  }

  // The oldest collective in flight, described; "" when none.
  std::string oldest_in_flight(double* age_s) {
    std::lock_guard<std::mutex> lock(table_mu);
    const Entry* oldest = nullptr;
    for (const auto& [id, e] : in_flight) {
      if (!oldest || e.start < oldest->start) oldest = &e;
    }
    if (!oldest) return "";
    if (age_s) *age_s = std::chrono::duration<double>(Clock::now() - oldest->start).count();
    return describe(*oldest);
  }

  [[noreturn]] void die(const std::string& line, int code) {
    write_line(line);
    {
      // Not removed under us: hooks_mu is held while they run (a hook must not call back in).
      std::lock_guard<std::mutex> lock(hooks_mu);
      for (auto& [id, hook] : abort_hooks) {
        try {
          hook();
        } catch (...) {  // exiting anyway: a failing abort must not keep us from it
        }
      }
    }
    _exit(code);
  }

  void check_signal() {
    const int sig = g_signal;
    if (sig == 0) return;
    const char* name = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal";
    const std::string what = oldest_in_flight(nullptr);
    die(prefix() +
            str("received ", name, " while ",
                what.empty() ? std::string("no collective was in flight") : what + " was in flight",
                "; exiting"),
        128 + sig);
  }

  void check_timeout() {
    double age = 0;
    const std::string what = oldest_in_flight(&age);
    const double limit = timeout_s.load();
    if (what.empty() || age <= limit) return;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", age);
    die(prefix() + what + " has not completed after " + buf +
            str(" s (parallel.timeout_s = ", limit, "); aborting the job"),
        3);
  }

  void check_pollers() {
    std::string error;
    {
      std::lock_guard<std::mutex> lock(hooks_mu);
      for (auto& [id, poll] : pollers) {
        try {
          error = poll();
        } catch (const std::exception& e) {
          error = e.what();
        }
        if (!error.empty()) break;
      }
    }
    if (error.empty()) return;
    const std::string what = oldest_in_flight(nullptr);
    die(prefix() + error + (what.empty() ? "" : " (in flight: " + what + ")") +
            "; aborting the job",
        3);
  }

  void loop() {
    for (;;) {
      std::this_thread::sleep_for(kPollInterval);
      check_signal();
      check_pollers();
      check_timeout();
    }
  }
};

Watchdog& Watchdog::instance() {
  static Watchdog* w = new Watchdog();  // leaked: see the file comment
  return *w;
}

Watchdog::Impl* Watchdog::impl() {
  static Impl* i = new Impl();
  return i;
}

void Watchdog::start(double timeout_s, int world_rank) {
  GRAFT_CHECK(timeout_s > 0, "watchdog timeout ", timeout_s, " s must be positive");
  Impl* i = impl();
  i->timeout_s = timeout_s;
  i->rank = world_rank;
  if (i->running.exchange(true)) return;
  struct sigaction sa = {};
  sa.sa_handler = on_terminate_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::thread([i] { i->loop(); }).detach();
}

bool Watchdog::running() const { return impl()->running.load(); }

uint64_t Watchdog::begin(const char* op, const std::string& group, int group_size,
                         const std::string& backend) {
  Impl* i = impl();
  Impl::Entry e{op,          group, backend, group_size, i->step.load(std::memory_order_relaxed),
                Clock::now()};
  std::lock_guard<std::mutex> lock(i->table_mu);
  const uint64_t id = i->next_id++;
  i->in_flight.emplace(id, std::move(e));
  return id;
}

void Watchdog::end(uint64_t id) {
  Impl* i = impl();
  std::lock_guard<std::mutex> lock(i->table_mu);
  i->in_flight.erase(id);
}

void Watchdog::set_step(int64_t step) { impl()->step.store(step, std::memory_order_relaxed); }

uint64_t Watchdog::add_abort_hook(std::function<void()> hook) {
  Impl* i = impl();
  std::lock_guard<std::mutex> lock(i->hooks_mu);
  const uint64_t id = i->next_hook_id++;
  i->abort_hooks.emplace(id, std::move(hook));
  return id;
}

uint64_t Watchdog::add_poller(std::function<std::string()> poller) {
  Impl* i = impl();
  std::lock_guard<std::mutex> lock(i->hooks_mu);
  const uint64_t id = i->next_hook_id++;
  i->pollers.emplace(id, std::move(poller));
  return id;
}

void Watchdog::remove_abort_hook(uint64_t id) {
  Impl* i = impl();
  std::lock_guard<std::mutex> lock(i->hooks_mu);
  i->abort_hooks.erase(id);
}

void Watchdog::remove_poller(uint64_t id) {
  Impl* i = impl();
  std::lock_guard<std::mutex> lock(i->hooks_mu);
  i->pollers.erase(id);
}

}  // namespace graft
