// graft parity --checkpoint DIR [--reference FILE] [--device cpu|cuda] [--layers reference|te]
//              [--dtype f32|bf16] [--step1-grads reference|own] [--fp8 none|delayed|current]
// Prints one JSON line (see framework/model/parity.h); exit 0 only when every figure is within
// its tolerance, 1 otherwise, 2 on bad input.
#include <iostream>

#include "framework/core/error.h"
#include "framework/model/parity.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc("parity");
  desc.add_options()("checkpoint", po::value<std::string>()->required(),
                     "HF checkpoint folder (config.json + safetensors)")(
      "reference", po::value<std::string>()->default_value(""),
      "reference outputs (default: CHECKPOINT/reference.safetensors)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu or cuda[:N]")(
      "layers", po::value<std::string>()->default_value("reference"),
      "decoder layers: reference (llama.decoder_layer) or te (te.transformer_layer)")(
      "dtype", po::value<std::string>()->default_value("f32"),
      "parameters and activations: f32, or bf16 (cuda; f32 gradients and master weights)")(
      "step1-grads", po::value<std::string>()->default_value("reference"),
      "gradients the checked AdamW step starts from: reference (transformers') or own")(
      "fp8", po::value<std::string>()->default_value("none"),
      "FP8 GEMMs in the TE layers: none, delayed or current (docs/fp8.md; needs --layers te)");
  auto vm = parse_options("parity", "--checkpoint DIR [options]", desc, args);
  if (!vm) return 0;
  ParityOptions opt;
  opt.checkpoint = (*vm)["checkpoint"].as<std::string>();
  opt.reference = (*vm)["reference"].as<std::string>();
  opt.device = parse_device((*vm)["device"].as<std::string>(), "--device");
  opt.layers = (*vm)["layers"].as<std::string>();
  const std::string dtype = (*vm)["dtype"].as<std::string>();
  GRAFT_INPUT_CHECK(dtype == "f32" || dtype == "bf16", "--dtype = '", dtype,
                    "', expected f32 or bf16");
  opt.dtype = dtype == "bf16" ? DType::kBF16 : DType::kF32;
  const std::string step1 = (*vm)["step1-grads"].as<std::string>();
  GRAFT_INPUT_CHECK(step1 == "reference" || step1 == "own", "--step1-grads = '", step1,
                    "', expected reference or own");
  opt.step1_from_reference_grads = step1 == "reference";
  const std::string fp8 = (*vm)["fp8"].as<std::string>();
  GRAFT_INPUT_CHECK(fp8 == "none" || fp8 == "delayed" || fp8 == "current", "--fp8 = '", fp8,
                    "', expected none, delayed or current");
  opt.fp8 = fp8 == "delayed"   ? te::Fp8Recipe::kDelayed
            : fp8 == "current" ? te::Fp8Recipe::kCurrent
                               : te::Fp8Recipe::kNone;
  const ParityResult r = run_parity(opt);
  std::cout << r.to_json().dump() << std::endl;
  return r.pass() ? 0 : 1;
}

RegisterCommand reg{"parity", "compare a checkpoint's outputs with transformers' reference", run};

}  // namespace
}  // namespace graft::launch
