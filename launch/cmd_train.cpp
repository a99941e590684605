// `graft train --recipe R [--set a.b=c ...] [--metrics-out F.jsonl] [--print-config]`: trains
// per the recipe (see framework/recipe/recipe.h); options live in the recipe, `--set` overrides
// any key with the same validation. --print-config prints the resolved recipe and exits.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "framework/recipe/recipe.h"
#include "framework/train/trainer.h"
#include "launch/command.h"
#include "parallel/launch.h"

namespace graft::launch {
namespace {

int run_train(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("recipe", po::value<std::string>()->required(), "recipe YAML file")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override a recipe key: --set optim.lr=1e-3 (repeatable)")(
      "metrics-out", po::value<std::string>(), "write one JSON object per logged step here")(
      "print-config", po::bool_switch(), "print the resolved recipe and exit");
  auto vm = parse_options("train", "--recipe FILE [--set key=value ...] [--metrics-out FILE]", desc,
                          args);
  if (!vm) return 0;
  std::vector<std::string> sets;
  if (vm->count("set")) sets = (*vm)["set"].as<std::vector<std::string>>();
  Recipe recipe;  // the same recipe error on every rank is one line (rank 0's)
  parse_on_every_rank([&] { recipe = load_recipe((*vm)["recipe"].as<std::string>(), sets); });
  if ((*vm)["print-config"].as<bool>()) {
    std::cout << "# resolved from " << recipe.file << " (config hash " << recipe.config_hash()
              << ")\n"
              << recipe.resolved_yaml();
    return 0;
  }
  TrainOptions opt;
  if (vm->count("metrics-out")) opt.metrics_out = (*vm)["metrics-out"].as<std::string>();
  opt.live_line = ::isatty(::fileno(stdout)) != 0;
  Trainer trainer(std::move(recipe), opt);
  TrainResult r = trainer.run();
  std::printf("done: %zu steps in %.1f s\n", r.steps.size(), r.wall_s);
  return 0;
}

RegisterCommand reg{"train", "train a model from a YAML recipe", run_train};

}  // namespace
}  // namespace graft::launch
