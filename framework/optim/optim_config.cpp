#include "framework/optim/optim_config.h"

#include <cmath>

#include "framework/recipe/recipe_node.h"

namespace graft {

OptimConfig parse_optim_config(RecipeNode& n) {
  OptimConfig c;
  c.lr = n.get<double>("lr", c.lr);
  if (!(c.lr > 0) || !std::isfinite(c.lr)) n.fail("lr", str("= ", c.lr, ", expected > 0"));
  auto betas = n.get<std::vector<double>>("betas", {c.beta1, c.beta2});
  if (betas.size() != 2) n.fail("betas", "expected a list of two numbers [beta1, beta2]");
  for (double b : betas)
    if (!(b >= 0 && b < 1)) n.fail("betas", str("= ", b, ", expected 0 <= beta < 1"));
  c.beta1 = betas[0];
  c.beta2 = betas[1];
  c.eps = n.get<double>("eps", c.eps);
  if (!(c.eps > 0)) n.fail("eps", str("= ", c.eps, ", expected > 0"));
  c.weight_decay = n.get<double>("weight_decay", c.weight_decay);
  if (!(c.weight_decay >= 0)) n.fail("weight_decay", str("= ", c.weight_decay, ", expected >= 0"));
  auto no_decay = n.get<std::vector<std::string>>("no_decay", {"norm", "bias", "embedding"});
  c.decay_norms = c.decay_biases = c.decay_embeddings = true;
  for (const auto& k : no_decay) {
    if (k == "norm")
      c.decay_norms = false;
    else if (k == "bias")
      c.decay_biases = false;
    else if (k == "embedding")
      c.decay_embeddings = false;
    else
      n.fail("no_decay", str("contains '", k, "', expected norm, bias or embedding"));
  }
  c.grad_clip = n.get<double>("grad_clip", c.grad_clip);
  if (!(c.grad_clip >= 0)) n.fail("grad_clip", str("= ", c.grad_clip, ", expected >= 0 (0 = off)"));
  n.finish();
  return c;
}

const char* schedule_name(ScheduleType t) {
  switch (t) {
    case ScheduleType::kConstant:
      return "constant";
    case ScheduleType::kCosine:
      return "cosine";
    case ScheduleType::kLinear:
      return "linear";
    case ScheduleType::kWSD:
      return "wsd";
  }
  return "?";
}

ScheduleConfig parse_schedule_config(RecipeNode& n, int64_t total_steps) {
  ScheduleConfig c;
  const std::string type = n.get<std::string>("type", "cosine");
  if (type == "constant")
    c.type = ScheduleType::kConstant;
  else if (type == "cosine")
    c.type = ScheduleType::kCosine;
  else if (type == "linear")
    c.type = ScheduleType::kLinear;
  else if (type == "wsd")
    c.type = ScheduleType::kWSD;
  else
    n.fail("type", str("= ", type, ", expected constant, cosine, linear or wsd"));
  c.warmup_steps = n.get<int64_t>("warmup_steps", 0);
  if (c.warmup_steps < 0 || c.warmup_steps > total_steps)
    n.fail("warmup_steps",
           str("= ", c.warmup_steps, ", expected 0 .. train.steps (", total_steps, ")"));
  c.min_lr_ratio = n.get<double>("min_lr_ratio", c.min_lr_ratio);
  if (!(c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1))
    n.fail("min_lr_ratio", str("= ", c.min_lr_ratio, ", expected 0 .. 1"));
  c.decay_steps = n.get<int64_t>("decay_steps", 0);
  if (c.decay_steps < 0 || c.warmup_steps + c.decay_steps > total_steps)
    n.fail("decay_steps", str("= ", c.decay_steps, ", expected 0 .. train.steps - warmup_steps (",
                              total_steps - c.warmup_steps, ")"));
  if (c.type == ScheduleType::kWSD && c.decay_steps == 0)
    c.decay_steps = std::max<int64_t>(1, (total_steps - c.warmup_steps) / 5);
  n.finish();
  return c;
}

}  // namespace graft
