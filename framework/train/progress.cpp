#include "framework/train/progress.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/train/tensorboard.h"

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

void ProgressLog::set_tensorboard(std::unique_ptr<TensorBoardWriter> writer) {
  tensorboard_ = std::move(writer);
}

void ProgressLog::log(const StepMetrics& m) {
  char tps[32];
  if (m.tokens_per_s >= 1e4)
    std::snprintf(tps, sizeof tps, "%.1fk", m.tokens_per_s / 1e3);
  else
    std::snprintf(tps, sizeof tps, "%.0f", m.tokens_per_s);
  char eval[64] = "";
  if (m.eval_loss)
    std::snprintf(eval, sizeof eval, " | eval %.4f (ppl %.2f)", *m.eval_loss,
                  std::exp(*m.eval_loss));
  char line[320];
  std::snprintf(line, sizeof line,
                "step %lld/%lld | loss %.4f%s | lr %.2e | gnorm %.3f | %s tok/s | ETA %s%s",
                static_cast<long long>(m.step), static_cast<long long>(m.total), m.loss, eval, m.lr,
                m.grad_norm, tps, format_duration(m.eta_s).c_str(),
                m.skipped ? " | SKIPPED (non-finite)" : "");
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
    if (m.peak_mem_gib) j["peak_mem_gib"] = num(*m.peak_mem_gib);
    if (m.mfu) j["mfu"] = num(*m.mfu);
    if (!m.attention.empty()) j["attention"] = m.attention;
    if (m.eval_loss) {
      j["eval_loss"] = num(*m.eval_loss);
      j["eval_ppl"] = num(std::exp(*m.eval_loss));
    }
    metrics_ << j.dump() << "\n";
    metrics_.flush();
    GRAFT_INPUT_CHECK(metrics_.good(), metrics_path_, ": writing the metrics file failed");
  }
  if (tensorboard_) {
    std::vector<std::pair<std::string, double>> v = {{"loss", m.loss},
                                                     {"lr", m.lr},
                                                     {"grad_norm", m.grad_norm},
                                                     {"tokens_per_s", m.tokens_per_s}};
    if (m.eval_loss) v.emplace_back("eval_loss", *m.eval_loss);
    if (m.mfu) v.emplace_back("mfu", *m.mfu);
    if (m.peak_mem_gib) v.emplace_back("peak_mem_gib", *m.peak_mem_gib);
    tensorboard_->scalars(m.step, v);
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
