#include "framework/train/progress.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace graft {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

ProgressLog::ProgressLog(std::ostream& out, bool live_line, const std::string& metrics_path,
                         bool append)
    : out_(out), live_(live_line), metrics_path_(metrics_path) {
  if (!metrics_path.empty()) {
    metrics_.open(metrics_path, std::ios::out | (append ? std::ios::app : std::ios::trunc));
    GRAFT_INPUT_CHECK(metrics_.good(), metrics_path,
                      ": cannot create the metrics file (--metrics-out)");
  }
}

ProgressLog::~ProgressLog() { finish(); }

void ProgressLog::log(const StepMetrics& m) {
  char tps[32];
  if (m.tokens_per_s >= 1e4)
    std::snprintf(tps, sizeof tps, "%.1fk", m.tokens_per_s / 1e3);
  else
    std::snprintf(tps, sizeof tps, "%.0f", m.tokens_per_s);
  char line[256];
  std::snprintf(
      line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %s tok/s | ETA %s%s",
      static_cast<long long>(m.step), static_cast<long long>(m.total), m.loss, m.lr, m.grad_norm,
      tps, format_duration(m.eta_s).c_str(), m.skipped ? " | SKIPPED (non-finite)" : "");
  if (live_ && !m.skipped) {
    out_ << "\r" << line << "\x1b[K" << std::flush;
    line_open_ = true;
  } else {
    if (line_open_) out_ << "\n";
    line_open_ = false;
    out_ << line << std::endl;
  }
  if (metrics_.is_open()) {
    auto num = [](double v) {
      return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    };
    nlohmann::json j = {{"step", m.step},
                        {"loss", num(m.loss)},
                        {"lr", m.lr},
                        {"grad_norm", num(m.grad_norm)},
                        {"tokens_per_s", m.tokens_per_s},
                        {"skipped", m.skipped},
                        {"elapsed_s", m.elapsed_s}};
    metrics_ << j.dump() << "\n";
    metrics_.flush();
    GRAFT_INPUT_CHECK(metrics_.good(), metrics_path_, ": writing the metrics file failed");
  }
}

void ProgressLog::message(const std::string& text) {
  finish();
  out_ << text << std::endl;
}

void ProgressLog::finish() {
  if (line_open_) out_ << "\n" << std::flush;
  line_open_ = false;
}

}  // namespace graft
