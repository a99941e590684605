// Training progress: a live line on a terminal, plain lines otherwise, and a JSONL metrics file.
//
// Line mode rewrites one line ("\r") per logged step:
//   step 120/600 | loss 2.8132 | lr 2.98e-03 | gnorm 0.412 | 11.9k tok/s | ETA 3m05s
// A step with an evaluation adds "| eval 2.7511 (ppl 15.66)" after the loss. Plain mode prints
// the same text as its own line. The metrics file gets one JSON object per logged step:
// {"step", "loss", "lr", "grad_norm", "tokens_per_s", "skipped", "elapsed_s", "peak_mem_gib",
//  "mfu", "eval_loss", "eval_ppl"} (mfu only when a peak is known, eval_* only on eval steps;
// non-finite numbers are null). With a TensorBoard writer the same step is an event with the
// scalars loss, eval_loss, lr, grad_norm, tokens_per_s, mfu, peak_mem_gib (those present).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
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
  std::optional<double> eval_loss, mfu, peak_mem_gib;
  std::string attention;  // what the step's attention kernels ran (AttnReport); "" = not recorded
};

class TensorBoardWriter;

class ProgressLog {
 public:
  // metrics_path "" = no metrics file. InputError when it cannot be created.
  // append: keep earlier records in metrics_path (a resumed run continues the same file).
  ProgressLog(std::ostream& out, bool live_line, const std::string& metrics_path,
              bool append = false);
  ~ProgressLog();
  void log(const StepMetrics& m);
  // Also write each logged step as a TensorBoard event (logging.tensorboard).
  void set_tensorboard(std::unique_ptr<TensorBoardWriter> writer);
  // A message on its own line (ends a live line first).
  void message(const std::string& text);
  void finish();  // ends a live line

 private:
  std::ostream& out_;
  bool live_;
  bool line_open_ = false;
  std::ofstream metrics_;
  std::string metrics_path_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

std::string format_duration(double seconds);  // "3m05s", "1h02m", "12s"

}  // namespace graft
