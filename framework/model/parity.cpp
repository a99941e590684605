#include "framework/model/parity.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <thread>

#include "framework/io/safetensors.h"
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "framework/model/weight_slices.h"
#include "framework/model/weight_table.h"
#include "framework/registry/registry.h"
#include "kernels/adamw.h"
#include "layers/te/fp8_state.h"
#include "parallel/grad_buckets.h"
#include "parallel/launch.h"
#include "parallel/process_group.h"

namespace graft {
namespace {

// Fixture settings (reference.json): torch.optim.AdamW on all parameters.
constexpr float kLr = 1e-2f, kBeta1 = 0.9f, kBeta2 = 0.95f, kEps = 1e-8f, kWd = 0.1f;

// Sums of squared differences and of squared references over [begin, end), in double.
void squared_sums(const float* out, const float* ref, size_t begin, size_t end, double* num,
                  double* den) {
  double n = 0, d = 0;
  for (size_t i = begin; i < end; ++i) {
    const double e = static_cast<double>(out[i]) - ref[i];
    n += e * e;
    d += static_cast<double>(ref[i]) * ref[i];
  }
  *num = n;
  *den = d;
}

// ||out - ref|| / ||ref|| over `n` floats. The deep fixture compares 1.2 G elements three times,
// so the sums run on up to 16 threads over a fixed split into 64 chunks added in order: the
// figure does not depend on the thread count.
double rel_err(const float* out, const float* ref, size_t n) {
  constexpr size_t kChunks = 64;
  std::vector<double> num(kChunks), den(kChunks);
  const size_t per = (n + kChunks - 1) / kChunks;
  const size_t threads =
      n < (size_t{1} << 22) ? 1 : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 16);
  auto work = [&](size_t t) {
    for (size_t c = t; c < kChunks; c += threads)
      squared_sums(out, ref, std::min(n, c * per), std::min(n, (c + 1) * per), &num[c], &den[c]);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();
  double sn = 0, sd = 0;
  for (size_t c = 0; c < kChunks; ++c) {
    sn += num[c];
    sd += den[c];
  }
  return sd > 0 ? std::sqrt(sn / sd) : std::sqrt(sn);
}

double rel_err(const std::vector<float>& out, const std::vector<float>& ref) {
  GRAFT_CHECK(out.size() == ref.size(), "rel_err: ", out.size(), " vs ", ref.size(), " elements");
  return rel_err(out.data(), ref.data(), out.size());
}

// A host f32 contiguous tensor with t's values: t itself where it already is one (no copy).
Tensor host_f32(const Tensor& t) {
  if (t.device().is_cpu() && t.dtype() == DType::kF32 && t.is_contiguous()) return t;
  Tensor c = Tensor::empty(t.shape(), DType::kF32);
  c.copy_from(t.device().is_cpu() ? t : t.to(Device::cpu()));
  return c;
}

double rel_err(const Tensor& out, const Tensor& ref) {
  GRAFT_CHECK(out.numel() == ref.numel(), "rel_err: ", out.numel(), " vs ", ref.numel(),
              " elements");
  const Tensor a = host_f32(out), b = host_f32(ref);
  return rel_err(a.data<float>(), b.data<float>(), static_cast<size_t>(a.numel()));
}

std::vector<int64_t> to_ids(const Tensor& t) {
  std::vector<int64_t> out;
  const Tensor c = t.contiguous();
  for (int64_t i = 0; i < c.numel(); ++i) out.push_back(c.data<int64_t>()[i]);
  return out;
}

class Reference {
 public:
  explicit Reference(const std::string& path) : path_(path), file_(SafetensorsFile::open(path)) {}
  bool has(const std::string& name) const { return file_->find(name) != nullptr; }
  Tensor get(const std::string& name, DType dtype) const { return view(name, dtype).clone(); }
  // Read-only: the tensor in the mapped file, without a copy (kept mapped while it lives).
  Tensor view(const std::string& name, DType dtype) const {
    const TensorInfo* info = file_->find(name);
    GRAFT_INPUT_CHECK(info != nullptr, path_, ": tensor '", name, "' is missing");
    GRAFT_INPUT_CHECK(info->dtype == dtype, path_, ": ", name, " is ",
                      dtype_safetensors_name(info->dtype), ", expected ",
                      dtype_safetensors_name(dtype));
    return file_->tensor(name);
  }
  void check_shape(const std::string& name, const Tensor& t, const Shape& want) const {
    GRAFT_INPUT_CHECK(t.shape() == want, path_, ": ", name, " is ", shape_str(t.shape()),
                      ", the model gives ", shape_str(want));
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<SafetensorsFile> file_;
};

// Max rel error over HF-named tensors against `prefix`+name in the reference.
double compare_named(const Reference& ref, const std::string& prefix,
                     const std::vector<std::pair<std::string, Tensor>>& ours, std::string* worst) {
  double max_err = 0;
  for (const auto& [name, t] : ours) {
    const Tensor r = ref.view(prefix + name, DType::kF32);
    ref.check_shape(prefix + name, r, t.shape());
    const double e = rel_err(t, r);
    if (worst->empty() || e > max_err) {
      max_err = e;
      *worst = name;
    }
  }
  return max_err;
}

// Sets every parameter's gradient from the reference's grad.<hf name> tensors (weight table read
// in the loading direction).
void load_reference_grads(CausalLM& model, const Reference& ref) {
  WeightTable table = build_weight_table(model);
  for (const HfParamEntry& e : table.params) {
    Parameter& p = *e.parameter;
    Tensor host = Tensor::zeros(p.value.shape(), DType::kF32);
    for (const LocalPiece& b : local_pieces(e)) {
      const Tensor g = ref.view("grad." + b.hf_name, DType::kF32);
      ref.check_shape("grad." + b.hf_name, g, table.hf_shapes.at(b.hf_name));
      box_view(host, b.local_offset, b.box).copy_from(box_view(g, b.hf_offset, b.box));
    }
    p.grad.copy_from(host);
  }
}

// The layout's groups: a single process, or tp × cp ranks under mpirun (no data parallelism:
// the fixture is one batch). One-line InputErrors name the option.
std::shared_ptr<const ParallelGroups> parity_groups(const ParityOptions& opt) {
  const WorldInfo& w = world_info();
  GRAFT_INPUT_CHECK(opt.tp >= 1, "--tp = ", opt.tp, ", expected >= 1");
  GRAFT_INPUT_CHECK(opt.cp >= 1, "--cp = ", opt.cp, ", expected >= 1");
  GRAFT_INPUT_CHECK(!opt.sequence_parallel || opt.tp > 1, "--sequence-parallel needs --tp > 1");
  GRAFT_INPUT_CHECK(opt.tp * opt.cp == w.size, "--tp ", opt.tp, " x --cp ", opt.cp, " = ",
                    opt.tp * opt.cp, " ranks, but the world has ", w.size,
                    " (run under mpirun -np ", opt.tp * opt.cp, ")");
  if (w.size == 1) return single_process_groups();
  ParallelConfig c;
  c.tp = opt.tp;
  c.cp = opt.cp;
  c.dp = 1;
  c.sequence_parallel = opt.sequence_parallel;
  c.backend = opt.backend;
  return make_parallel_groups(c, w, opt.device, "graft parity");
}

}  // namespace

bool generation_consistent(const std::vector<int64_t>& ours, const std::vector<int64_t>& ref,
                           size_t prompt_len, const std::vector<int64_t>& topk_ids,
                           const std::vector<float>& topk_gaps, size_t k, double logits_err,
                           int64_t* near_ties) {
  GRAFT_CHECK(topk_ids.size() == topk_gaps.size() && (k == 0 || topk_ids.size() % k == 0),
              "generation_consistent: ", topk_ids.size(), " ids, ", topk_gaps.size(),
              " gaps, k = ", k);
  *near_ties = 0;
  const double near = 4.0 * std::sqrt(2.0) * logits_err;
  const size_t steps = k ? topk_ids.size() / k : 0;
  for (size_t i = 0; i < prompt_len; ++i)
    if (i >= ours.size() || i >= ref.size() || ours[i] != ref[i]) return false;
  for (size_t i = prompt_len; i < ref.size(); ++i) {
    const size_t step = i - prompt_len;
    const bool known = step < steps;
    if (known && k > 1 && topk_gaps[step * k + 1] < near) ++*near_ties;
    if (i < ours.size() && ours[i] == ref[i]) continue;
    if (i >= ours.size() || !known) return false;
    for (size_t j = 1; j < k; ++j)  // another token: one of the reference's within the gap?
      if (topk_ids[step * k + j] == ours[i]) return topk_gaps[step * k + j] < near;
    return false;
  }
  return ours.size() == ref.size();
}

ParityTolerances ParityTolerances::for_model(DType t, int64_t num_layers, bool fp8) {
  ParityTolerances tol;
  if (t == DType::kF32 && !fp8) return tol;
  GRAFT_CHECK(num_layers >= 1, "parity tolerances: num_layers = ", num_layers);
  const double L = static_cast<double>(num_layers);
  const double n = 11 * L + 3;  // roundings on a hidden state's forward path (parity.h)
  const double u = kBf16UnitRoundoff, u8 = kE4m3UnitRoundoff;
  double fwd_sq = u * u * n;
  if (fp8) fwd_sq += u8 * u8 * (4 * L + 1);
  const double fwd = std::sqrt(fwd_sq);
  tol.logits = std::max(2e-2, fwd);
  tol.loss = std::max(2e-2, fwd);
  tol.grads = std::max(1e-1, std::sqrt(2.0) * fwd);
  return tol;
}

ParityTolerances ParityTolerances::for_fp8() {
  ParityTolerances tol;
  tol.logits = 0.125;
  tol.loss = 0.05;
  tol.grads = 0.25;
  tol.gate_generate = false;
  return tol;
}

bool ParityResult::pass() const {
  return logits_rel_err <= tol.logits && padded_logits_rel_err <= tol.logits &&
         grad_max_rel_err <= tol.grads && step1_max_rel_err <= tol.grads &&
         loss_abs_err <= tol.loss && (generate_consistent || !tol.gate_generate);
}

nlohmann::json ParityResult::to_json() const {
  return {{"arch", arch},
          {"layers", layers},
          {"device", device},
          {"dtype", dtype},
          {"fp8", fp8},
          {"logits_rel_err", logits_rel_err},
          {"padded_logits_rel_err", padded_logits_rel_err},
          {"loss", loss},
          {"loss_abs_err", loss_abs_err},
          {"grad_max_rel_err", grad_max_rel_err},
          {"grad_worst", grad_worst},
          {"step1_max_rel_err", step1_max_rel_err},
          {"step1_worst", step1_worst},
          {"step1_grads", step1_grads},
          {"step1_own_grads_max_rel_err", step1_own_grads_max_rel_err},
          {"step1_own_grads_worst", step1_own_grads_worst},
          {"generate_match", generate_match},
          {"generate_consistent", generate_consistent},
          {"generate_near_ties", generate_near_ties},
          {"generated", generated},
          {"tolerances",
           {{"logits_rel_err", tol.logits},
            {"padded_logits_rel_err", tol.logits},
            {"grad_max_rel_err", tol.grads},
            {"step1_max_rel_err", tol.grads},
            {"loss_abs_err", tol.loss},
            {"generate_consistent", tol.gate_generate ? "gated" : "reported"}}},
          {"pass", pass()}};
}

ParityResult run_parity(const ParityOptions& opt) {
  GRAFT_INPUT_CHECK(opt.layers == "reference" || opt.layers == "te", "--layers = '", opt.layers,
                    "', expected reference or te");
  GRAFT_INPUT_CHECK(!opt.checkpoint.empty(), "--checkpoint is required");
  GRAFT_INPUT_CHECK(opt.fp8 == te::Fp8Recipe::kNone || opt.layers == "te", "--fp8 ",
                    te::fp8_recipe_name(opt.fp8), " needs --layers te (FP8 runs in the TE layers)");
  GRAFT_INPUT_CHECK(opt.dtype == DType::kF32 || (opt.dtype == DType::kBF16 && opt.device.is_cuda()),
                    "--dtype = ", dtype_name(opt.dtype), " on ", opt.device.str(),
                    ", expected f32, or bf16 on cuda");
  std::shared_ptr<const ParallelGroups> groups;
  try {
    groups = parity_groups(opt);
  } catch (const InputError& e) {
    throw CollectiveInputError(e.what());  // every rank checks the same options
  }
  const bool root = groups->world->rank() == 0;
  const std::string ref_path =
      opt.reference.empty() ? opt.checkpoint + "/reference.safetensors" : opt.reference;
  Reference ref(ref_path);

  // Build (and load) the model with the decoder layer the option asks for.
  const ModelConfig cfg = load_hf_config(opt.checkpoint + "/config.json");
  auto load = [&](std::shared_ptr<const ParallelGroups> g) {
    std::optional<OverrideScope> scope;
    if (opt.layers == "te")
      scope.emplace(std::vector<std::pair<std::string, std::string>>{
          {cfg.decoder_layer, "te.transformer_layer"}});
    if (opt.fp8 == te::Fp8Recipe::kNone)
      return load_hf_model(opt.checkpoint,
                           {opt.dtype, opt.device, std::move(g), opt.fp32_residual});
    te::Fp8Config fc;
    fc.recipe = opt.fp8;
    ModelConfig c = cfg;
    read_generation_config(opt.checkpoint, c);
    c.decoder.params_dtype = opt.dtype;
    c.decoder.device = opt.device;
    BuildContext ctx{opt.device, opt.dtype, std::move(g),
                     std::make_shared<te::Fp8State>(fc, opt.device)};
    ctx.fp32_residual = opt.fp32_residual;
    std::unique_ptr<CausalLM> m = build_model(c, ctx);
    load_hf_weights(*m, opt.checkpoint);
    return m;
  };
  std::unique_ptr<CausalLM> model;
  try {
    model = load(groups);
  } catch (const InputError& e) {
    // The layers' layout checks and the checkpoint's (every rank checks every tensor's name,
    // shape and dtype) fail alike on every rank: one line for the job.
    if (groups->world->size() == 1) throw;
    throw CollectiveInputError(e.what());
  }

  // Every tensor the comparison needs, checked up front (on every rank) so one error lists all
  // that are missing.
  std::vector<std::string> need = {
      "input_ids",           "logits",          "loss",        "attention_mask",
      "logits_right_padded", "generate_prompt", "generate_ids"};
  for (const std::string& name : build_weight_table(*model).hf_names) {
    need.push_back("grad." + name);
    need.push_back("step1." + name);
  }
  std::string missing;
  for (const auto& n : need)
    if (!ref.has(n)) missing += (missing.empty() ? "" : ", ") + n;
  GRAFT_INPUT_CHECK(missing.empty(), ref_path, ": missing tensors: ", missing);

  ParityResult r;
  r.arch = cfg.arch;
  r.layers = opt.layers;
  r.device = opt.device.str();
  r.dtype = dtype_name(opt.dtype);
  r.tol = opt.fp8 == te::Fp8Recipe::kNone ? ParityTolerances::for_model(opt.dtype, cfg.num_layers)
                                          : ParityTolerances::for_fp8();
  r.fp8 = te::fp8_recipe_name(opt.fp8);
  const int64_t V = cfg.vocab_size;

  const Tensor ids = ref.get("input_ids", DType::kI64);
  GRAFT_INPUT_CHECK(ids.ndim() == 2, ref_path, ": input_ids is ", shape_str(ids.shape()),
                    ", expected [batch, seq]");
  if (opt.fp8 == te::Fp8Recipe::kDelayed) {  // calibration: the scales from one pass's amaxes
    model->allocate_grads();
    model->zero_grad();
    model->forward_backward(ids, ids);
    model->context().fp8->end_step(*groups->world);
    model->zero_grad();
  }
  const Shape logits_shape = {ids.size(0), ids.size(1), V};
  const Tensor ref_logits = ref.view("logits", DType::kF32);
  ref.check_shape("logits", ref_logits, logits_shape);
  r.logits_rel_err = rel_err(model->forward(ids), ref_logits);

  // Right padding: compare the positions the mask keeps.
  const Tensor mask = ref.get("attention_mask", DType::kI64);
  ref.check_shape("attention_mask", mask, ids.shape());
  const Tensor ref_padded = ref.get("logits_right_padded", DType::kF32);
  ref.check_shape("logits_right_padded", ref_padded, logits_shape);
  const std::vector<float> ours = model->forward(ids, mask).to(Device::cpu()).to_f32_vector();
  const std::vector<float> theirs = ref_padded.to_f32_vector();
  const std::vector<int64_t> m = to_ids(mask);
  std::vector<float> a, b;
  for (size_t pos = 0; pos < m.size(); ++pos) {
    if (!m[pos]) continue;
    a.insert(a.end(), ours.begin() + pos * V, ours.begin() + (pos + 1) * V);
    b.insert(b.end(), theirs.begin() + pos * V, theirs.begin() + (pos + 1) * V);
  }
  r.padded_logits_rel_err = rel_err(a, b);

  // Greedy generation with the KV cache, before the optimizer step changes the weights.
  const std::vector<int64_t> prompt = to_ids(ref.get("generate_prompt", DType::kI64));
  r.expected_generation = to_ids(ref.get("generate_ids", DType::kI64));
  GRAFT_INPUT_CHECK(r.expected_generation.size() >= prompt.size(), ref_path,
                    ": generate_ids is shorter than generate_prompt");
  GenerateOptions g;
  g.max_new_tokens = static_cast<int64_t>(r.expected_generation.size() - prompt.size());
  g.stop_ids = model->config().eos_token_ids;  // generation_config.json's, as transformers
  if (opt.sequence_parallel) {
    // A one-token decode step cannot be split over the sequence: the same layout without
    // sequence parallelism generates (the same weights, loaded again).
    auto plain = std::make_shared<ParallelGroups>(*groups);
    plain->layout.sequence_parallel = false;
    r.generated = load(plain)->generate(prompt, g);
  } else {
    r.generated = model->generate(prompt, g);
  }
  r.generate_match = r.generated == r.expected_generation;
  r.generate_consistent = r.generate_match;
  if (ref.has("generate_topk_ids")) {
    const Tensor ids_k = ref.get("generate_topk_ids", DType::kI64);
    const Tensor gaps_k = ref.get("generate_topk_gaps", DType::kF32);
    GRAFT_INPUT_CHECK(ids_k.ndim() == 2 && gaps_k.shape() == ids_k.shape(), ref_path,
                      ": generate_topk_ids ", shape_str(ids_k.shape()), " and generate_topk_gaps ",
                      shape_str(gaps_k.shape()), ", expected both [steps, k]");
    r.generate_consistent = generation_consistent(
        r.generated, r.expected_generation, prompt.size(), to_ids(ids_k), gaps_k.to_f32_vector(),
        static_cast<size_t>(ids_k.size(1)), r.logits_rel_err, &r.generate_near_ties);
  }

  // Loss and gradients (labels = input_ids, shifted inside); gradients of parameters that tp
  // ranks hold replicas of (q/k norms, sequence-parallel norms, replicated KV heads) summed over
  // the ranks holding them.
  model->allocate_grads();
  model->zero_grad();
  r.loss = model->forward_backward(ids, ids);
  // Under cp every rank's gradient is its chunks' part: summed over cp (as the trainer's buckets
  // reduce over dp × cp).
  for (auto& [name, p] : model->named_parameters()) {
    if (p->spec.sums_over(LayoutGroup::kTP)) sum_replica_grads(*p, *groups->tp);
    if (groups->cp->size() > 1) groups->cp->all_reduce(p->grad, ReduceOp::kSum)->wait();
  }
  r.loss_abs_err = std::fabs(r.loss - ref.get("loss", DType::kF32).to_f32_vector().at(0));
  auto grads = export_hf_tensors(*model, HfExportSource::kGrads);
  if (root) r.grad_max_rel_err = compare_named(ref, "grad.", grads, &r.grad_worst);

  // One AdamW step on every parameter, from our gradients and from transformers' gradients.
  // The gated figure uses transformers' gradients by default: AdamW's first step moves a weight
  // by lr * g / (|g| + eps), so a gradient element near zero (the k_proj bias in RoPE dimensions
  // that barely rotate) turns float32 summation noise into a step of either sign, and even an
  // exact (float64) implementation differs from transformers' float32 step by more than the
  // tolerance on such checkpoints. From the reference gradients the step isolates the optimizer
  // and the weight layout; the step from our own gradients is reported beside it.
  auto adamw_all = [&] {
    for (auto& [name, p] : model->named_parameters()) {
      Tensor mom = Tensor::zeros(p->value.shape(), DType::kF32, p->value.device());
      Tensor var = Tensor::zeros(p->value.shape(), DType::kF32, p->value.device());
      const bool low = p->value.dtype() != DType::kF32;
      Tensor master =
          low ? p->value.to(Device::cpu()).to(DType::kF32).to(p->value.device()) : p->value;
      AdamWParams ap;
      ap.param = static_cast<float*>(master.raw());
      if (low) {
        ap.param_copy = p->value.raw();
        ap.copy_dtype = p->value.dtype();
      }
      ap.grad = static_cast<const float*>(p->grad.raw());
      ap.m = static_cast<float*>(mom.raw());
      ap.v = static_cast<float*>(var.raw());
      ap.n = p->value.numel();
      ap.hyper = {kLr, kBeta1, kBeta2, kEps, kWd, /*step=*/1, /*grad_scale=*/1.0f};
      ap.device = p->value.device();
      adamw_step(ap);
    }
  };
  std::vector<Tensor> before;
  for (auto& [name, p] : model->named_parameters()) before.push_back(p->value.clone());
  adamw_all();
  auto step1 = export_hf_tensors(*model);
  if (root)
    r.step1_own_grads_max_rel_err = compare_named(ref, "step1.", step1, &r.step1_own_grads_worst);
  r.step1_grads = opt.step1_from_reference_grads ? "reference" : "own";
  if (!opt.step1_from_reference_grads) {
    r.step1_max_rel_err = r.step1_own_grads_max_rel_err;
    r.step1_worst = r.step1_own_grads_worst;
    return r;
  }
  size_t i = 0;
  for (auto& [name, p] : model->named_parameters()) p->value.copy_from(before[i++]);
  load_reference_grads(*model, ref);
  adamw_all();
  step1 = export_hf_tensors(*model);
  if (root) r.step1_max_rel_err = compare_named(ref, "step1.", step1, &r.step1_worst);
  return r;
}

}  // namespace graft
