// Training progress: a live line on a terminal, plain lines otherwise, and a JSONL metrics file.
//
// Line mode rewrites one line ("\r") per logged step:
//   step 120/600 | loss 2.8132 | lr 2.98e-03 | gnorm 0.412 | 11.9k tok/s | ETA 3m05s
// Plain mode prints the same text as its own line. The metrics file gets one JSON object per
// logged step: {"step", "loss", "lr", "grad_norm", "tokens_per_s", "skipped", "elapsed_s"}.
#pragma once

#include <cstdint>
#include <fstream>
#include <ostream>
#include <string>

namespace graft {

struct StepMetrics {
  int64_t step = 0;  // 1-based count of updates done after this step
  int64_t total = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  bool skipped = false;
  double elapsed_s = 0;
  double eta_s = 0;
};

class ProgressLog {
 public:
  // metrics_path "" = no metrics file. InputError when it cannot be created.
  // append: keep earlier records in metrics_path (a resumed run continues the same file).
  ProgressLog(std::ostream& out, bool live_line, const std::string& metrics_path,
              bool append = false);
  ~ProgressLog();
  void log(const StepMetrics& m);
  // A message on its own line (ends a live line first).
  void message(const std::string& text);
  void finish();  // ends a live line

 private:
  std::ostream& out_;
  bool live_;
  bool line_open_ = false;
  std::ofstream metrics_;
  std::string metrics_path_;
};

std::string format_duration(double seconds);  // "3m05s", "1h02m", "12s"

}  // namespace graft
