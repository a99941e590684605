// Attention backend names, parsing and the per-model report of what ran (kernels/attention.h).
#include <string>

#include "framework/core/error.h"
#include "kernels/attention.h"

namespace graft {

const char* attn_backend_name(AttnBackend b) {
  switch (b) {
    case AttnBackend::kAuto:
      return "auto";
    case AttnBackend::kCudnn:
      return "cudnn";
    case AttnBackend::kUnfused:
      return "unfused";
    case AttnBackend::kCpu:
      return "cpu";
  }
  return "?";
}

AttnBackend parse_attn_backend(const std::string& s, const std::string& where) {
  if (s == "auto") return AttnBackend::kAuto;
  if (s == "cudnn") return AttnBackend::kCudnn;
  if (s == "unfused") return AttnBackend::kUnfused;
  throw InputError(str(where, " = '", s, "': expected auto, cudnn or unfused"));
}

namespace {

// "cudnn" when every call of the direction ran cuDNN, "" when none ran, else the counts.
std::string one_direction(const int64_t (&n)[4]) {
  int used = 0, which = 0;
  for (int i = 0; i < 4; ++i)
    if (n[i] > 0) ++used, which = i;
  if (used == 0) return "";
  if (used == 1) return attn_backend_name(static_cast<AttnBackend>(which));
  std::string s;
  for (int i = 1; i < 4; ++i)
    if (n[i] > 0)
      s += str(s.empty() ? "" : " ", attn_backend_name(static_cast<AttnBackend>(i)), " ", n[i]);
  return s;
}

}  // namespace

std::string AttnReport::summary() const {
  const std::string f = one_direction(fwd), b = one_direction(bwd);
  if (f.empty() && b.empty()) return "none";
  if (b.empty() || f == b) return f.empty() ? b : f;
  if (f.empty()) return b;
  const bool pure = f.find(' ') == std::string::npos && b.find(' ') == std::string::npos;
  if (pure) return str(f, " fwd, ", b, " bwd");
  return str("mixed (fwd ", f, "; bwd ", b, ")");
}

}  // namespace graft
