// `graft bench --recipe R [--set k=v ...] [--steps N] [--warmup N] [--train-loop]`: times the
// full training step of the recipe's model (framework/train/bench.h) and prints one JSON line on
// stdout; progress goes to stderr. --train-loop also times the recipe's own training loop
// (sampler, grad_accum, logging) and adds it to the line as "train_loop".
#include <iostream>

#include "framework/recipe/recipe.h"
#include "framework/train/bench.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run_bench_cmd(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("recipe", po::value<std::string>()->required(), "recipe YAML file")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override a recipe key: --set model.layers=te (repeatable)")(
      "steps", po::value<int64_t>()->default_value(10), "timed steps (median reported)")(
      "warmup", po::value<int64_t>()->default_value(3), "untimed warm-up steps")(
      "gemm-reps", po::value<int64_t>()->default_value(10),
      "timed bf16 8192^3 GEMMs for the peak (GPU)")(
      "train-loop", po::bool_switch()->default_value(false),
      "also time the recipe's own training loop (its data, grad_accum, logging)")(
      "profile", po::bool_switch()->default_value(false),
      "also time each kernel family over --steps more steps (GPU; kernels/profile.h)");
  auto vm = parse_options("bench", "--recipe FILE [--set key=value ...]", desc, args);
  if (!vm) return 0;
  std::vector<std::string> sets;
  if (vm->count("set")) sets = (*vm)["set"].as<std::vector<std::string>>();
  Recipe recipe = load_recipe((*vm)["recipe"].as<std::string>(), sets);
  BenchOptions opt;
  opt.steps = (*vm)["steps"].as<int64_t>();
  opt.warmup = (*vm)["warmup"].as<int64_t>();
  opt.gemm_reps = (*vm)["gemm-reps"].as<int64_t>();
  opt.train_loop = (*vm)["train-loop"].as<bool>();
  opt.profile = (*vm)["profile"].as<bool>();
  GRAFT_INPUT_CHECK(opt.gemm_reps >= 1, "--gemm-reps = ", opt.gemm_reps, ", expected >= 1");
  const BenchResult r = run_bench(recipe, opt);
  std::cout << r.to_json().dump() << std::endl;
  return 0;
}

RegisterCommand reg{"bench", "time the full training step of a recipe's model", run_bench_cmd};

}  // namespace
}  // namespace graft::launch
