// Parity with transformers on an HF checkpoint and the outputs transformers computed for it
// (reference.safetensors, format in tests/fixtures/hf/README.md). Used by `graft parity` and the
// model tests. Everything runs in float32; relative errors are ||out - ref|| / ||ref|| per tensor.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/core/device.h"

namespace graft {

struct ParityOptions {
  std::string checkpoint;  // HF checkpoint folder
  std::string reference;   // default: checkpoint/reference.safetensors
  Device device = Device::cpu();
  std::string layers = "reference";  // "reference" or "te" (override of the decoder layer)
};

struct ParityTolerances {
  double logits = 1e-4;  // logits_rel_err and padded_logits_rel_err
  double grads = 1e-3;   // grad_max_rel_err and step1_max_rel_err
  double loss = 1e-5;    // loss_abs_err
};

struct ParityResult {
  std::string arch, layers, device;
  double logits_rel_err = 0, padded_logits_rel_err = 0, loss = 0, loss_abs_err = 0;
  double grad_max_rel_err = 0, step1_max_rel_err = 0;
  std::string grad_worst, step1_worst;  // HF names of the largest errors
  bool generate_match = false;
  std::vector<int64_t> generated, expected_generation;
  ParityTolerances tol;

  bool pass() const;
  nlohmann::json to_json() const;  // the one line graft parity prints
};

// InputError for a bad option, an unreadable checkpoint, or a reference file that lacks a
// tensor the model needs (all missing names in one message).
ParityResult run_parity(const ParityOptions& opt);

}  // namespace graft
