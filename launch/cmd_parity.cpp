// graft parity --checkpoint DIR [--reference FILE] [--device cpu|cuda] [--layers reference|te]
//              [--dtype f32|bf16] [--residual bf16|f32] [--step1-grads reference|own]
//              [--fp8 none|delayed|current]
//              [--tp N] [--cp N] [--sequence-parallel] [--backend auto|nccl|mpi]
//              (under mpirun -np tp·cp)
// Prints one JSON line (see framework/model/parity.h; from rank 0 under mpirun, with the layout
// added); exit 0 only when every figure is within its tolerance, 1 otherwise, 2 on bad input
// (a bad layout included: one line).
#include <iostream>

#include "framework/core/error.h"
#include "framework/model/parity.h"
#include "launch/command.h"
#include "parallel/launch.h"

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
      "residual", po::value<std::string>()->default_value(""),
      "residual stream between the decoder layers: bf16 or f32 (precision.residual; default: "
      "--dtype)")("step1-grads", po::value<std::string>()->default_value("reference"),
                  "gradients the checked AdamW step starts from: reference (transformers') or own")(
      "fp8", po::value<std::string>()->default_value("none"),
      "FP8 GEMMs in the TE layers: none, delayed or current (docs/fp8.md; needs --layers te)")(
      "tp", po::value<int64_t>()->default_value(1), "tensor-parallel size (mpirun -np tp*cp)")(
      "cp", po::value<int64_t>()->default_value(1), "context-parallel size")(
      "sequence-parallel", po::bool_switch(), "sequence parallelism (needs --tp > 1)")(
      "backend", po::value<std::string>()->default_value("auto"),
      "collectives: auto (NCCL on CUDA, MPI on CPU), nccl, or mpi (MPI-staged on CUDA: ranks may "
      "share a GPU)");
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
  const std::string residual = (*vm)["residual"].as<std::string>();
  GRAFT_INPUT_CHECK(
      residual.empty() || residual == "f32" || (residual == "bf16" && dtype == "bf16"),
      "--residual = '", residual, "', expected f32, or bf16 with --dtype bf16");
  opt.fp32_residual = residual == "f32" && opt.dtype != DType::kF32;
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
  opt.tp = (*vm)["tp"].as<int64_t>();
  opt.cp = (*vm)["cp"].as<int64_t>();
  opt.sequence_parallel = (*vm)["sequence-parallel"].as<bool>();
  opt.backend = (*vm)["backend"].as<std::string>();
  if (world_info().size > 1) opt.device = bind_local_device(opt.device, opt.backend == "mpi");
  const ParityResult r = run_parity(opt);
  if (world_info().rank != 0) return 0;  // rank 0 holds the figures and prints them
  nlohmann::json j = r.to_json();
  if (world_info().size > 1)
    j["layout"] = {{"tp", opt.tp}, {"cp", opt.cp}, {"sequence_parallel", opt.sequence_parallel}};
  std::cout << j.dump() << std::endl;
  return r.pass() ? 0 : 1;
}

RegisterCommand reg{"parity", "compare a checkpoint's outputs with transformers' reference", run};

}  // namespace
}  // namespace graft::launch
