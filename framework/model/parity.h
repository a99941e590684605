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
  bool fp32_residual = false;  // --residual f32: precision.residual (BuildContext::fp32_residual)
  // The layout (run under mpirun with tp·cp ranks): the model is built with the tp layers and
  // loads its slices; rank 0 gathers the outputs and HF-named gradients and computes the figures.
  int64_t tp = 1, cp = 1;
  bool sequence_parallel = false;
  std::string backend = "auto";  // parallel.backend: auto | nccl | mpi (mpi-staged on CUDA)
};

struct ParityTolerances {
  double logits = 1e-4;  // logits_rel_err and padded_logits_rel_err
  double grads = 1e-3;   // grad_max_rel_err and step1_max_rel_err
  double loss = 1e-5;    // loss_abs_err
  // Low precision against an f32 reference, derived from the format's unit roundoff u and the
  // model's depth L (ParityTolerances::for_model):
  //   Every weight, activation and GEMM output on the forward path is rounded to the format; a
  //   decoder layer rounds about k = 11 times on the path of a hidden state (input norm, q/k/v
  //   GEMM, RoPE, attention output, o GEMM, residual add, norm, gate/up GEMM, activation, down
  //   GEMM, residual add), the embedding, final norm and LM head 3 more, so N = 11 L + 3. The
  //   roundings are independent with zero mean, so the relative error of the logits grows like a
  //   random walk, u sqrt(N) (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3,
  //   the probabilistic bound). bf16 has 8 significant bits: u = 2^-8.
  //     logits, loss (absolute, on a loss of about ln(vocab)): max(2e-2, u sqrt(N))
  //     gradients and step-1 weights: max(1e-1, u sqrt(2 N)) (the backward doubles the path;
  //       the 1e-1 floor: AdamW's first step moves each weight by about lr sign(g), and a sign
  //       flipped by rounding on a near-zero gradient moves that weight the other way)
  //   The floors are the gates measured on the 2-layer fixtures (there u sqrt(25) = 1.95e-2).
  //   Checked against a deep model: on a Llama-3.2-1B-shaped checkpoint (L = 16, N = 179,
  //   u sqrt(N) = 5.2e-2) graft's bf16 logits land 2.51e-2 and transformers' own bf16 runs
  //   2.12e-2 .. 2.96e-2 from its f32 logits, so the measured errors sit at about half the
  //   random-walk bound (norms and softmax damp part of it) and the gate passes both with
  //   margin; gradients 4.7e-2 against max(1e-1, 7.3e-2). scripts/make-deep-fixture.py writes
  //   such a checkpoint and its reference outputs (transformers, f32 on the GPU); on a second
  //   draw (2026-12-01, H200, transformers 5.17) graft bf16 gave 2.52e-2 with te and with
  //   reference layers, gradients 4.76e-2, f32 6.8e-6, against transformers' own 2.26e-2 ..
  //   2.75e-2. (An earlier version of the script made its f32 reference by Module.to(float32)
  //   after Module.to(bfloat16), which also rounds the rotary inv_freq buffer: that reference was
  //   5.1e-2 away from the exact-frequency model, and every bf16 run looked twice as wrong.)
  //   FP8 GEMMs (e4m3, 4 significant bits: u = 2^-4, delayed/current scaling) use the same
  //   formula with that u on the k_gemm = 4 GEMM outputs per layer added to the bf16 ones:
  //   tol^2 = (2^-8)^2 N + (2^-4)^2 (4 L + 1), so FP8 errors dominate.
  // The gate for a model of `num_layers` decoder layers in `t` (f32: the fixed f32 gates), with
  // FP8 GEMMs when `fp8`.
  static ParityTolerances for_model(DType t, int64_t num_layers, bool fp8 = false);
  static ParityTolerances for_dtype(DType t) { return for_model(t, 2); }  // the fixtures' depth
  static constexpr double kBf16UnitRoundoff = 1.0 / 256;                  // 2^-8
  static constexpr double kE4m3UnitRoundoff = 1.0 / 16;                   // 2^-4
  // FP8 against an f32 reference: TE's FP8 tolerance (rtol 0.125) for logits, 0.05 for the loss
  // (absolute); gradients come from E5M2 (2 mantissa bits, relative rounding up to 2^-3 per
  // element) through every layer's backward, so 0.25 for the largest per-tensor relative error.
  // Greedy generation is reported but not gated: logits a few percent off can swap two nearly
  // equal tokens of these random tiny models. (graft parity --fp8 uses these measured gates;
  // for_model(t, L, true) is the depth-scaled bound.)
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
  bool generate_match = false;             // the tokens equal transformers' exactly
  // What the gate checks: equal to generate_match unless the reference stores its top-k tokens
  // per step (generation_consistent below), when it is the near-tie-aware comparison.
  bool generate_consistent = false;
  int64_t generate_near_ties = 0;  // reference steps whose margin was within the logits' error
  std::vector<int64_t> generated, expected_generation;
  ParityTolerances tol;

  bool pass() const;
  nlohmann::json to_json() const;  // the one line graft parity prints
};

// Greedy generation against transformers' when the reference stores, per generated step, its
// top-k tokens (generate_topk_ids [steps, k]) and their gaps below the top-1 logit divided by the
// rms of that logits row (generate_topk_gaps [steps, k], 0 first; scripts/make-deep-fixture.py).
// A run whose logits carry a relative error e (run_parity passes the run's measured
// logits_rel_err, which the logits gate bounds) moves each logit by about e * rms, so two logits'
// difference by about sqrt(2) e * rms: a token whose gap is under 4 sqrt(2) e (four standard
// deviations) is one rounding may have put first. Steps are compared in order: an equal token
// continues; a different token passes only if it is one of the reference's tokens within that
// gap, and ends the comparison (the contexts differ from there on); anything else fails, as does
// a different prompt or length. `near_ties` counts the steps whose second token was within the
// gap. Random-weight models have flat logits: the deep fixture's second step has its top three
// within 0.015 rms, where bf16's 2.5e-2 error spreads two logits by 0.035 rms.
bool generation_consistent(const std::vector<int64_t>& ours, const std::vector<int64_t>& ref,
                           size_t prompt_len, const std::vector<int64_t>& topk_ids,
                           const std::vector<float>& topk_gaps, size_t k, double logits_err,
                           int64_t* near_ties);

// InputError for a bad option or layout, an unreadable checkpoint, or a reference file that lacks
// a tensor the model needs (all missing names in one message). Under a layout it is collective,
// and the result is complete on world rank 0 only (the others' figures are zero).
ParityResult run_parity(const ParityOptions& opt);

}  // namespace graft
