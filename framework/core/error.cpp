#include "framework/core/error.h"

namespace graft::detail {

void throw_check(const char* file, int line, const char* cond, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << cond;
  if (!msg.empty()) os << ": " << msg;
  throw Error(os.str());
}

}  // namespace graft::detail
