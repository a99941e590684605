// A training recipe: YAML -> one small typed config per component.
//
// Top-level sections: model, data, optim, schedule, train, checkpoint, logging, eval, precision,
// parallel, device. Each component parses its own section (framework/*/..._config.h) through a
// RecipeNode, which rejects unknown keys and wrong types with "file:line: key.path ...".
//
//   precision:
//     params: f32        # f32 | bf16. Master weights and optimizer state are always f32. On the
//                        # CPU, bf16 is emulated: the weights used by forward are the f32 master
//                        # weights rounded to bf16 after every step.
//     residual: f32      # bf16 | f32, default: params. f32 keeps the residual stream between the
//                        # decoder layers (and its gradient) in f32 while parameters, GEMMs and
//                        # normalised activations stay bf16 (TE's fp32_residual_connection);
//                        # bf16 needs params: bf16. No effect with f32 parameters or on the CPU
//                        # (its bf16 is emulated: activations are f32 there).
//     fp8: {recipe, format, margin, amax_history_len, amax_compute_algo, bf16_layers,
//           fp8_weights}     # FP8 GEMMs in the TE layers: framework/recipe/fp8_recipe.h
//   parallel: {tp, cp, dp, sequence_parallel, order, zero, bucket_mb, timeout_s, backend}
//                        # see parallel/layout.h; tp * cp * dp = the world size
//   device: cpu          # cpu | cuda
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/data/data_config.h"
#include "framework/optim/optim_config.h"
#include "framework/recipe/model_recipe.h"
#include "framework/train/train_config.h"
#include "layers/te/fp8_config.h"
#include "parallel/layout.h"

namespace graft {

struct PrecisionConfig {
  DType params = DType::kF32;
  DType residual = DType::kF32;  // precision.residual (resolved: params when the key is absent)
  te::Fp8Config fp8;
  // Whether the model's BuildContext keeps an f32 residual stream (BuildContext::fp32_residual).
  bool fp32_residual() const { return residual == DType::kF32 && params != DType::kF32; }
};

struct Recipe {
  std::string file;
  ModelRecipe model;
  DataConfig data;
  OptimConfig optim;
  ScheduleConfig schedule;
  TrainConfig train;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  EvalConfig eval;
  PrecisionConfig precision;
  ParallelConfig parallel;
  Device device;

  YAML::Node resolved;  // every key with its effective value (defaults filled in)
  std::string resolved_yaml() const;
  // The part of `resolved` that defines the run (all but checkpoint, logging, eval, parallel,
  // precision.fp8 and precision.residual (a checkpoint resumes with FP8 or the f32 residual
  // switched on, off or changed), train.stop_after;
  // the per-rank batch_size as the global batch for `dp` data-parallel ranks): a checkpoint only
  // resumes under the same one, in any layout.
  YAML::Node identity(int64_t dp = 1) const;
  std::string config_hash(int64_t dp = 1) const;  // 16 hex digits of FNV-1a over identity()
};

// Reads `path` and applies `sets` ("a.b=c", in order) before validation.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& sets = {});

// The `parallel` section alone, from `root` (a recipe's YAML, or null) with `sets` applied; each
// set must be a parallel.* key (InputError naming it otherwise). graft generate reads its
// layout so; `file` names the source in errors.
ParallelConfig parse_parallel_layout(YAML::Node root, const std::string& file,
                                     const std::vector<std::string>& sets);
Recipe parse_recipe(const std::string& yaml_text, const std::string& file,
                    const std::vector<std::string>& sets = {});

// The part of a resolved recipe that defines the run (see Recipe::identity) and its hash.
YAML::Node recipe_identity(const YAML::Node& resolved, int64_t dp = 1);
std::string recipe_hash(const YAML::Node& resolved, int64_t dp = 1);

// The dotted path of the first key whose value differs between two resolved trees, "" if equal.
std::string first_difference(const YAML::Node& a, const YAML::Node& b,
                             const std::string& path = "");

std::string emit_yaml(const YAML::Node& node);

}  // namespace graft
