#include "framework/core/env.h"

#include <cstdlib>
#include <string>

#include "framework/core/error.h"

namespace graft {

int env_choice(const char* name, std::initializer_list<std::string_view> values) {
  const char* e = std::getenv(name);
  const std::string_view v = e ? e : "";
  if (v.empty()) return 0;
  int i = 0;
  std::string expected;
  for (std::string_view c : values) {
    if (v == c) return i;
    expected += i == 0 ? "" : (i + 1 == static_cast<int>(values.size()) ? " or " : ", ");
    expected += c;
    ++i;
  }
  throw InputError(str("environment: ", name, " = '", v, "' (expected ", expected, ")"));
}

}  // namespace graft
