#include "framework/recipe/fp8_recipe.h"

#include <algorithm>
#include <cctype>

#include "framework/recipe/recipe_node.h"

namespace graft {
namespace {

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 10 &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

te::Fp8Config parse_fp8_config(RecipeNode& n, int64_t num_layers) {
  using te::Fp8Recipe;
  te::Fp8Config c;
  const std::string recipe = n.get<std::string>("recipe", "none");
  if (recipe == "none")
    c.recipe = Fp8Recipe::kNone;
  else if (recipe == "delayed")
    c.recipe = Fp8Recipe::kDelayed;
  else if (recipe == "current")
    c.recipe = Fp8Recipe::kCurrent;
  else
    n.fail("recipe", str("= ", recipe, ", expected none, delayed or current"));
  const std::string format = n.get<std::string>("format", "hybrid");
  if (format == "hybrid")
    c.format = te::Fp8Format::kHybrid;
  else if (format == "e4m3")
    c.format = te::Fp8Format::kE4M3;
  else
    n.fail("format", str("= ", format, ", expected hybrid or e4m3 (e5m2 alone is not a recipe)"));
  c.margin = n.get<int64_t>("margin", 0);
  if (c.margin < 0 || c.margin > 32) n.fail("margin", str("= ", c.margin, ", expected 0..32"));
  c.amax_history_len = n.get<int64_t>("amax_history_len", 1024);
  if (c.amax_history_len < 1 || c.amax_history_len > 65536)
    n.fail("amax_history_len", str("= ", c.amax_history_len, ", expected 1..65536"));
  const std::string algo = n.get<std::string>("amax_compute_algo", "max");
  if (algo == "max")
    c.amax_compute_algo = te::AmaxAlgo::kMax;
  else if (algo == "most_recent")
    c.amax_compute_algo = te::AmaxAlgo::kMostRecent;
  else
    n.fail("amax_compute_algo", str("= ", algo, ", expected max or most_recent"));
  if (c.recipe == Fp8Recipe::kCurrent) {
    const char* why =
        ": current scaling is stateless (scale = fp8_max / amax of the tensor "
        "itself); the key applies to recipe: delayed only";
    if (c.margin != 0) n.fail("margin", str("= ", c.margin, why));
    if (c.amax_history_len != 1024) n.fail("amax_history_len", str("= ", c.amax_history_len, why));
    if (algo != "max") n.fail("amax_compute_algo", str("= ", algo, why));
  }
  for (const std::string& e : n.get<std::vector<std::string>>("bf16_layers", {})) {
    int64_t i = -1;
    if (e == "first")
      i = 0;
    else if (e == "last")
      i = num_layers - 1;
    else if (is_index(e))
      i = std::stoll(e);
    else
      n.fail("bf16_layers", str("entry '", e, "': expected first, last or a layer index"));
    if (num_layers > 0 && (i < 0 || i >= num_layers))
      n.fail("bf16_layers", str("entry '", e, "' = layer ", i, ": the model has ", num_layers,
                                " decoder layers (0..", num_layers - 1, ")"));
    if (std::find(c.bf16_layers.begin(), c.bf16_layers.end(), i) == c.bf16_layers.end())
      c.bf16_layers.push_back(i);
  }
  std::sort(c.bf16_layers.begin(), c.bf16_layers.end());
  c.fp8_weights = n.get<bool>("fp8_weights", false);
  if (c.fp8_weights && c.recipe == Fp8Recipe::kNone)
    n.fail("fp8_weights",
           "= true needs recipe: delayed or current (only FP8 GEMMs have FP8 "
           "weights)");
  n.finish();
  return c;
}

}  // namespace graft
