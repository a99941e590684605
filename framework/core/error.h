// Errors. Two kinds:
//  - graft::Error: a broken internal invariant (a bug in graft or a misuse of an API).
//    Raised by GRAFT_CHECK(cond, msg...) and carries file:line.
//  - graft::InputError: bad user input (a file, a recipe key, a config field, a CLI value).
//    Raised by GRAFT_INPUT_CHECK / throw InputError(...). The CLI prints its message as one
//    line on stderr and exits with code 2. Messages name the file, the key and what was expected.
// Never use assert() on input: asserts vanish in release builds.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace graft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad input that every rank of a distributed run finds alike (an impossible parallel layout):
// rank 0 prints it, once for the job; the other ranks exit with the same code silently.
class CollectiveInputError : public InputError {
 public:
  using InputError::InputError;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_check(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

// Builds a message from any streamable values: str("x = ", x, " must divide ", n).
template <class... Args>
std::string str(const Args&... args) {
  return detail::concat(args...);
}

}  // namespace graft

// Internal invariant: GRAFT_CHECK(n % 8 == 0, "n = ", n, " must be a multiple of 8").
#define GRAFT_CHECK(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      ::graft::detail::throw_check(__FILE__, __LINE__, #cond,                               \
                                   ::graft::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

// User input: GRAFT_INPUT_CHECK(tp > 0, path, ": parallel.tp = ", tp, ", expected >= 1").
#define GRAFT_INPUT_CHECK(cond, ...)                                   \
  do {                                                                 \
    if (!(cond)) [[unlikely]]                                          \
      throw ::graft::InputError(::graft::detail::concat(__VA_ARGS__)); \
  } while (0)
