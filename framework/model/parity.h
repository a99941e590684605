// Parity with transformers on an HF checkpoint and the outputs transformers computed for it
// (reference.safetensors, format in tests/fixtures/hf/README.md). Used by `graft parity` and the
// model tests. Runs in float32 (default) or, on CUDA, with bf16 parameters and activations
// (f32 gradients and AdamW master weights); relative errors are ||out - ref|| / ||ref|| per
// tensor against transformers' float32 outputs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "layers/te/fp8_config.h"

namespace graft {

struct ParityOptions {
  std::string checkpoint;  // HF checkpoint folder
  std::string reference;   // default: checkpoint/reference.safetensors
  Device device = Device::cpu();
  std::string layers = "reference";  // "reference" or "te" (override of the decoder layer)
  DType dtype = DType::kF32;         // parameters/activations: f32, or bf16 (CUDA only)
  // step1 compares one AdamW step taken from transformers' gradients (true: isolates optimizer
  // and layout) or from ours (false); the other figure is reported as step1_own_grads_*.
  bool step1_from_reference_grads = true;
  // FP8 GEMMs in the TE layers (--fp8 delayed|current; needs layers "te"). Delayed scaling first
  // runs one calibration forward + backward (the amaxes it records become the scales, as TE's
  // fp8_autocast(calibrating=True)), since a fresh model's scales are 1.
  te::Fp8Recipe fp8 = te::Fp8Recipe::kNone;
};

struct ParityTolerances {
  double logits = 1e-4;  // logits_rel_err and padded_logits_rel_err
  double grads = 1e-3;   // grad_max_rel_err and step1_max_rel_err
  double loss = 1e-5;    // loss_abs_err
  // bf16 against an f32 reference: bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 2e-3),
  // and every weight, activation and GEMM output is rounded to it, so the error of a tensor grows
  // as that roundoff times about the square root of the roundings on its path (tens through a
  // decoder stack): logits 2e-2, loss 2e-2 (absolute, on a loss of about ln(vocab)), and 1e-1
  // for gradients and step-1 weights (a gradient is the product of a bf16 backward chain, and
  // AdamW's first step moves each weight by about lr·sign(g), so a sign flipped by rounding on a
  // near-zero gradient moves that weight the other way).
  static ParityTolerances for_dtype(DType t);
  // FP8 against an f32 reference: TE's FP8 tolerance (rtol 0.125) for logits, 0.05 for the loss
  // (absolute); gradients come from E5M2 (2 mantissa bits, relative rounding up to 2^-3 per
  // element) through every layer's backward, so 0.25 for the largest per-tensor relative error.
  // Greedy generation is reported but not gated: logits a few percent off can swap two nearly
  // equal tokens of these random tiny models.
  static ParityTolerances for_fp8();
  bool gate_generate = true;
};

struct ParityResult {
  std::string arch, layers, device, dtype = "f32", fp8 = "none";
  double logits_rel_err = 0, padded_logits_rel_err = 0, loss = 0, loss_abs_err = 0;
  double grad_max_rel_err = 0, step1_max_rel_err = 0;
  std::string grad_worst, step1_worst;
  std::string step1_grads;                 // "reference" or "own": what step1 stepped from
  double step1_own_grads_max_rel_err = 0;  // informational: the step from our gradients
  std::string step1_own_grads_worst;       // HF names of the largest errors
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
