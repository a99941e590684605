#include "framework/train/run_report.h"

#include <sys/resource.h>

#include <cmath>
#include <cstdio>

#include "framework/train/bench.h"
#include "framework/train/progress.h"

namespace graft {

std::optional<double> MfuMeter::mfu(double tokens_per_s) const {
  if (!(peak_tflops > 0) || !(tokens_per_s > 0)) return std::nullopt;
  return flops_per_token * tokens_per_s / (peak_tflops * 1e12 * static_cast<double>(devices));
}

MfuMeter make_mfu_meter(const Recipe& r, const ModelConfig& model, Device device, int64_t devices) {
  MfuMeter m;
  m.flops_per_token = model_flops_per_token(model, r.data.seq_len);
  m.devices = devices;
  if (r.logging.peak_tflops > 0) {
    m.peak_tflops = r.logging.peak_tflops;
    m.source = str("logging.peak_tflops = ", r.logging.peak_tflops);
  } else if (device.is_cuda()) {
    m.peak_tflops = gemm_peak_tflops(device, 8192, 10);
    device_backend().synchronize(device);
    device_backend().reset_peak(device);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", m.peak_tflops);
    m.source = str("measured bf16 8192^3 GEMM: ", buf, " TFLOP/s");
  }
  return m;
}

double peak_mem_gib(Device device) {
  if (device.is_cuda())
    return static_cast<double>(device_backend().peak_bytes(device)) / (1ULL << 30);
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1 << 20);  // KiB on Linux
}

std::string with_commas(double value) {
  std::string digits = std::to_string(static_cast<long long>(std::llround(value)));
  const size_t first = digits[0] == '-' ? 1 : 0;
  for (size_t i = digits.size(); i > first + 3; i -= 3) digits.insert(i - 3, ",");
  return digits;
}

std::string format_summary(const RunSummary& s) {
  char buf[64];
  std::string out = "summary: ";
  const int64_t steps = s.last_step - s.first_step;
  if (steps <= 0) {
    out += str("no steps run (already at step ", s.last_step, ")");
  } else {
    out += str(steps, " steps (", s.first_step + 1, "..", s.last_step, "), ", with_commas(s.tokens),
               " tokens in ", format_duration(s.wall_s));
    if (s.wall_s > 0) out += str(" (", with_commas(s.tokens / s.wall_s), " tokens/s)");
    if (s.total_tokens > s.tokens) out += str(", ", with_commas(s.total_tokens), " since step 0");
  }
  if (s.best_eval) {
    std::snprintf(buf, sizeof buf, "%.4f (ppl %.2f)", *s.best_eval, std::exp(*s.best_eval));
    out += str("; best eval loss ", buf, " at step ", s.best_eval_step);
    std::snprintf(buf, sizeof buf, "%.4f", *s.last_eval);
    out += str(", last ", buf, " at step ", s.last_eval_step);
  } else {
    out += s.eval_configured ? "; no eval ran" : "; no eval (data.validation is not set)";
  }
  if (s.last_checkpoint.empty())
    out += "; no checkpoint (checkpoint.dir is empty)";
  else
    out += str("; last checkpoint ", s.last_checkpoint);
  if (!s.hf_export.empty())
    out += str("; HF export ", s.hf_export);
  else if (!s.last_checkpoint.empty())
    out += str("; no HF export (graft export --checkpoint ", s.last_checkpoint,
               " --out DIR writes one)");
  else
    out += "; no HF export";
  return out + ".";
}

}  // namespace graft
