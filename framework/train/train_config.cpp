#include "framework/train/train_config.h"

#include <unistd.h>

#include <filesystem>

#include "framework/recipe/recipe_node.h"
#include "framework/train/tensorboard.h"

namespace graft {

TrainConfig parse_train_config(RecipeNode& n) {
  TrainConfig c;
  c.steps = require_positive(n, "steps", n.get<int64_t>("steps", c.steps));
  c.batch_size = require_positive(n, "batch_size", n.get<int64_t>("batch_size", c.batch_size));
  c.grad_accum = require_positive(n, "grad_accum", n.get<int64_t>("grad_accum", c.grad_accum));
  c.seed = n.get<int64_t>("seed", c.seed);
  c.stop_after = n.get<int64_t>("stop_after", 0);
  if (c.stop_after < 0) n.fail("stop_after", str("= ", c.stop_after, ", expected >= 0"));
  c.max_consecutive_skips = require_positive(
      n, "max_consecutive_skips", n.get<int64_t>("max_consecutive_skips", c.max_consecutive_skips));
  c.sample_tokens = n.get<int64_t>("sample_tokens", c.sample_tokens);
  if (c.sample_tokens < 0) n.fail("sample_tokens", str("= ", c.sample_tokens, ", expected >= 0"));
  c.sample_prompt = n.get<std::string>("sample_prompt", c.sample_prompt);
  c.sample_temperature = n.get<double>("sample_temperature", c.sample_temperature);
  if (!(c.sample_temperature >= 0))
    n.fail("sample_temperature", str("= ", c.sample_temperature, ", expected >= 0 (0 = greedy)"));
  c.sample_top_p = n.get<double>("sample_top_p", c.sample_top_p);
  if (!(c.sample_top_p > 0 && c.sample_top_p <= 1))
    n.fail("sample_top_p", str("= ", c.sample_top_p, ", expected in (0, 1]"));
  c.recompute = n.get<bool>("recompute", c.recompute);
  c.cuda_graph = n.get<bool>("cuda_graph", c.cuda_graph);
  n.finish();
  return c;
}

CheckpointConfig parse_checkpoint_config(RecipeNode& n) {
  CheckpointConfig c;
  c.dir = n.get<std::string>("dir", "");
  c.every = n.get<int64_t>("every", 0);
  if (c.every < 0) n.fail("every", str("= ", c.every, ", expected >= 0 (0 = only at the end)"));
  c.keep_last = require_positive(n, "keep_last", n.get<int64_t>("keep_last", c.keep_last));
  c.resume = n.get<std::string>("resume", "auto");
  if (c.resume != "auto" && c.resume != "none" && !std::filesystem::is_directory(c.resume))
    n.fail("resume",
           str("= '", c.resume, "', expected auto, none or an existing checkpoint folder"));
  n.finish();
  if (!c.dir.empty()) {
    // Nothing is created here (--print-config and failed runs leave no trace): the folder, or
    // its nearest existing ancestor, must be a writable directory.
    std::filesystem::path p = std::filesystem::absolute(c.dir);
    while (!std::filesystem::exists(p) && p.has_parent_path() && p != p.parent_path())
      p = p.parent_path();
    if (!std::filesystem::is_directory(p) || ::access(p.c_str(), W_OK) != 0)
      n.fail("dir",
             str("= '", c.dir, "' cannot be created or written (", p.string(),
                 std::filesystem::is_directory(p) ? " is not writable)" : " is not a folder)"));
  }
  return c;
}

LoggingConfig parse_logging_config(RecipeNode& n) {
  LoggingConfig c;
  c.every = require_positive(n, "every", n.get<int64_t>("every", c.every));
  const std::string p = n.get<std::string>("progress", "auto");
  if (p == "auto")
    c.progress = ProgressMode::kAuto;
  else if (p == "line")
    c.progress = ProgressMode::kLine;
  else if (p == "plain")
    c.progress = ProgressMode::kPlain;
  else
    n.fail("progress", str("= ", p, ", expected auto, line or plain"));
  c.tensorboard = n.get<std::string>("tensorboard", "");
  if (!c.tensorboard.empty() && !tensorboard_available())
    n.fail("tensorboard", str("= '", c.tensorboard,
                              "': this graft was built without protobuf (libprotobuf-dev, "
                              "protobuf-compiler), so it cannot write TensorBoard events"));
  c.peak_tflops = n.get<double>("peak_tflops", 0.0);
  if (!(c.peak_tflops >= 0))
    n.fail("peak_tflops", str("= ", c.peak_tflops, ", expected >= 0 (0 = measured on CUDA)"));
  n.finish();
  return c;
}

EvalConfig parse_eval_config(RecipeNode& n, bool has_validation) {
  EvalConfig c;
  c.every = n.get<int64_t>("every", c.every);
  if (c.every < 0) n.fail("every", str("= ", c.every, ", expected >= 0 (0 = only at the end)"));
  c.batches = require_positive(n, "batches", n.get<int64_t>("batches", c.batches));
  n.finish();
  if (c.every > 0 && !has_validation)
    n.fail("every", str("= ", c.every,
                        " needs validation data: set data.validation: {fraction: F} or {path: P}"));
  c.enabled = has_validation;
  return c;
}

}  // namespace graft
