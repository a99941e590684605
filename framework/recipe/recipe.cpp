#include "framework/recipe/recipe.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "framework/recipe/fp8_recipe.h"
#include "framework/recipe/recipe_node.h"

namespace graft {

std::string emit_yaml(const YAML::Node& node) {
  YAML::Emitter e;
  e << node;
  return std::string(e.c_str()) + "\n";
}

std::string Recipe::resolved_yaml() const { return emit_yaml(resolved); }

YAML::Node Recipe::identity(int64_t dp) const { return recipe_identity(resolved, dp); }

std::string Recipe::config_hash(int64_t dp) const { return recipe_hash(resolved, dp); }

// The layout is not part of a run's identity (a checkpoint resumes into another layout), but the
// global batch is: train.batch_size is per data-parallel rank, so the identity holds
// train.global_batch_size = batch_size * dp instead (dp as resolved for the world, see
// ParallelConfig; 1 when the recipe leaves it to be inferred and no world is known).
YAML::Node recipe_identity(const YAML::Node& resolved, int64_t dp) {
  YAML::Node id = YAML::Clone(resolved);
  id.remove("checkpoint");
  id.remove("logging");
  id.remove("eval");
  id.remove("parallel");
  // FP8 is a numerics choice like the layout: a run may resume with it switched on, off or
  // changed (the amax histories start fresh when the checkpoint has none, docs/fp8.md).
  if (id["precision"]) {
    id["precision"].remove("fp8");
    // The residual stream's dtype changes numerics, not state (and keeps older hashes valid).
    id["precision"].remove("residual");
  }
  if (id["train"]) {
    id["train"].remove("stop_after");
    id["train"].remove("cuda_graph");          // the same bits as the eager step
    id["train"].remove("sample_temperature");  // the end-of-run sample does not change training
    id["train"].remove("sample_top_p");
    if (id["train"]["batch_size"]) {
      const int64_t b = id["train"]["batch_size"].as<int64_t>();
      id["train"].remove("batch_size");
      id["train"]["global_batch_size"] = std::to_string(b * dp);
    }
  }
  return id;
}

namespace {
// A fresh copy with default styles and plain string scalars, so that a tree loaded from text and
// one built in memory emit the same bytes when their content is equal.
YAML::Node canonical(const YAML::Node& n) {
  if (n.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (auto it = n.begin(); it != n.end(); ++it) out[it->first.Scalar()] = canonical(it->second);
    return out;
  }
  if (n.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& e : n) out.push_back(canonical(e));
    return out;
  }
  if (n.IsScalar()) return YAML::Node(n.Scalar());
  return YAML::Node();
}
}  // namespace

std::string recipe_hash(const YAML::Node& resolved, int64_t dp) {
  const std::string s = emit_yaml(canonical(recipe_identity(resolved, dp)));
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string first_difference(const YAML::Node& a, const YAML::Node& b, const std::string& path) {
  auto join = [&](const std::string& k) { return path.empty() ? k : path + "." + k; };
  if (a.IsMap() && b.IsMap()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it->first.Scalar());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it->first.Scalar());
    for (const auto& k : keys) {
      const YAML::Node& ca = a;
      const YAML::Node& cb = b;
      YAML::Node x = ca[k], y = cb[k];
      if (!x.IsDefined() || !y.IsDefined()) return join(k);
      std::string d = first_difference(x, y, join(k));
      if (!d.empty()) return d;
    }
    return "";
  }
  return emit_yaml(canonical(a)) == emit_yaml(canonical(b)) ? "" : (path.empty() ? "(root)" : path);
}

namespace {

PrecisionConfig parse_precision(RecipeNode& n, int64_t num_layers) {
  PrecisionConfig c;
  const std::string p = n.get<std::string>("params", "f32");
  if (p == "f32")
    c.params = DType::kF32;
  else if (p == "bf16")
    c.params = DType::kBF16;
  else
    n.fail("params", str("= ", p, ", expected f32 or bf16"));
  const std::string r = n.get<std::string>("residual", p);
  if (r == "f32")
    c.residual = DType::kF32;
  else if (r == "bf16" && c.params == DType::kBF16)
    c.residual = DType::kBF16;
  else if (r == "bf16")
    n.fail("residual", str("= bf16 needs precision.params = bf16 (a residual stream narrower than ",
                           "the parameters); expected f32"));
  else
    n.fail("residual", str("= ", r, ", expected bf16 or f32"));
  {
    RecipeNode f = n.child("fp8");
    c.fp8 = parse_fp8_config(f, num_layers);
  }
  n.finish();
  return c;
}

ParallelConfig parse_parallel(RecipeNode& n) {
  ParallelConfig c;
  for (auto [key, dst] : {std::pair{"tp", &c.tp}, {"cp", &c.cp}}) {
    *dst = n.get<int64_t>(key, 1);
    if (*dst < 1) n.fail(key, str("= ", *dst, ", expected >= 1"));
  }
  // dp: 0 = inferred as world / (tp * cp) when the groups are made.
  c.dp = n.get<int64_t>("dp", 0);
  if (c.dp < 0) n.fail("dp", str("= ", c.dp, ", expected >= 1 (or 0: world / (tp * cp))"));
  c.pp = n.get<int64_t>("pp", 1);
  if (c.pp != 1) n.fail("pp", str("= ", c.pp, ": pipeline parallelism is not supported"));
  c.sequence_parallel = n.get<bool>("sequence_parallel", false);
  if (c.sequence_parallel && c.tp == 1) n.fail("sequence_parallel", "= true needs parallel.tp > 1");
  c.order = n.get<std::string>("order", "tp-cp-dp");
  if (c.order != "tp-cp-dp" && c.order != "tp-dp-cp")
    n.fail("order", str("= ", c.order, ", expected tp-cp-dp or tp-dp-cp"));
  c.zero = n.get<int64_t>("zero", 0);
  if (c.zero != 0 && c.zero != 1) n.fail("zero", str("= ", c.zero, ", expected 0 or 1"));
  c.bucket_mb = n.get<double>("bucket_mb", 25.0);
  if (!(c.bucket_mb > 0)) n.fail("bucket_mb", str("= ", c.bucket_mb, ", expected > 0"));
  c.timeout_s = n.get<double>("timeout_s", 600.0);
  if (!(c.timeout_s > 0)) n.fail("timeout_s", str("= ", c.timeout_s, ", expected > 0"));
  c.backend = n.get<std::string>("backend", "auto");
  if (c.backend != "auto" && c.backend != "nccl" && c.backend != "mpi")
    n.fail("backend", str("= ", c.backend, ", expected auto, nccl or mpi"));
  n.finish();
  return c;
}

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& file,
                    const std::vector<std::string>& sets) {
  auto source = std::make_shared<RecipeSource>();
  source->file = file;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw InputError(str(file, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& s : sets) apply_set_override(root, s, *source);

  Recipe r;
  r.file = file;
  r.resolved = YAML::Node(YAML::NodeType::Map);
  RecipeNode top(root, r.resolved, "", source);
  // Order matters only for messages: the model first (plugins may add architectures).
  {
    RecipeNode n = top.child("model");
    r.model = parse_model_recipe(n);
  }
  {
    RecipeNode n = top.child("train");
    r.train = parse_train_config(n);
  }
  {
    RecipeNode n = top.child("data");
    r.data = parse_data_config(n);
  }
  {
    RecipeNode n = top.child("optim");
    r.optim = parse_optim_config(n);
  }
  {
    RecipeNode n = top.child("schedule");
    r.schedule = parse_schedule_config(n, r.train.steps);
  }
  {
    RecipeNode n = top.child("checkpoint");
    r.checkpoint = parse_checkpoint_config(n);
  }
  {
    RecipeNode n = top.child("logging");
    r.logging = parse_logging_config(n);
  }
  {
    RecipeNode n = top.child("eval");
    r.eval = parse_eval_config(n, r.data.validation.enabled());
  }
  {
    RecipeNode n = top.child("precision");
    r.precision = parse_precision(n, r.model.config.num_layers);
  }
  {
    RecipeNode n = top.child("parallel");
    r.parallel = parse_parallel(n);
  }
  const std::string dev = top.get<std::string>("device", "cpu");
  r.device = parse_device(dev, top.where("device"));
  top.finish();

  if (r.model.config.attention == AttnBackend::kCudnn && !r.device.is_cuda())
    throw InputError(
        str(file, ": model.attention = cudnn needs a CUDA device (device = ", r.device.str(), ")"));
  const int64_t max_pos = r.model.config.max_position_embeddings;
  if (max_pos > 0 && r.data.seq_len > max_pos) {
    throw InputError(str(file, ": data.seq_len = ", r.data.seq_len,
                         " exceeds the model's max_position_embeddings = ", max_pos));
  }
  return r;
}

ParallelConfig parse_parallel_layout(YAML::Node root, const std::string& file,
                                     const std::vector<std::string>& sets) {
  auto source = std::make_shared<RecipeSource>();
  source->file = file;
  YAML::Node copy = root && root.IsMap() ? YAML::Clone(root) : YAML::Node(YAML::NodeType::Map);
  for (const auto& s : sets) {
    GRAFT_INPUT_CHECK(s.rfind("parallel.", 0) == 0, "--set ", s,
                      ": only parallel.* keys apply here (tp, cp, dp, sequence_parallel, ...)");
    apply_set_override(copy, s, *source);
  }
  YAML::Node resolved(YAML::NodeType::Map);
  RecipeNode top(copy, resolved, "", source);
  RecipeNode n = top.child("parallel");
  return parse_parallel(n);
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& sets) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), path, ": cannot read the recipe file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_recipe(ss.str(), path, sets);
}

}  // namespace graft
