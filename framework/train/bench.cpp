#include "framework/train/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "framework/core/device_timer.h"
#include "framework/optim/adamw.h"
#include "framework/train/cuda_graph_step.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/profile.h"
#include "layers/te/fp8_state.h"
#include "parallel/grad_buckets.h"
#include "parallel/parallel_state.h"

namespace graft {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times `fn` once: CUDA events on a GPU, the steady clock on the CPU. Milliseconds.
template <class F>
double time_ms(Device dev, F&& fn) {
  if (dev.is_cpu()) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  DeviceTimer& t = device_timer();
  void* a = t.record(dev);
  fn();
  void* b = t.record(dev);
  const double ms = t.elapsed_ms(a, b);
  t.destroy(a);
  t.destroy(b);
  return ms;
}

// Uniform values in [-1, 1) as bf16, on `dev` (an LCG: fast, and not all zeros, which would
// flatter the GEMM's power draw).
Tensor random_bf16(int64_t rows, int64_t cols, uint64_t seed, Device dev) {
  Tensor h = Tensor::empty({rows, cols}, DType::kF32);
  float* d = h.data<float>();
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int64_t i = 0; i < h.numel(); ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = static_cast<float>(static_cast<int64_t>(s >> 40) - (1LL << 23)) / (1 << 23);
  }
  return h.to(DType::kBF16).to(dev);
}

}  // namespace

double gemm_peak_tflops(Device dev, int64_t n, int64_t reps) {
  Tensor a = random_bf16(n, n, 1, dev), b = random_bf16(n, n, 2, dev);
  Tensor c = Tensor::empty({n, n}, DType::kBF16, dev);
  GemmParams p;
  p.a = a.raw();
  p.b = b.raw();
  p.c = c.raw();
  p.m = p.n = p.k = n;
  p.dtype = DType::kBF16;
  p.c_dtype = DType::kBF16;
  p.device = dev;
  for (int i = 0; i < 3; ++i) gemm(p);
  std::vector<double> ms;
  for (int64_t i = 0; i < reps; ++i) ms.push_back(time_ms(dev, [&] { gemm(p); }));
  return 2.0 * static_cast<double>(n) * n * n / (median(ms) * 1e-3) / 1e12;
}

// hf_baseline.py's formula, written with the real head_dim: q/o project to heads·head_dim, which
// equals hidden when head_dim = hidden/heads (every Llama, so the figures stay comparable) and
// differs for Gemma and Qwen3 (head_dim 256 / 128).
double model_flops_per_token(const ModelConfig& c, int64_t seq) {
  const double h = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_layers);
  const double f = static_cast<double>(c.decoder.ffn_hidden_size);
  const double V = static_cast<double>(c.vocab_size);
  const double hd = static_cast<double>(c.decoder.head_dim);
  const double q = static_cast<double>(c.decoder.num_attention_heads) * hd;
  const double kv = static_cast<double>(c.decoder.num_kv_heads) * hd;
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * f;
  const double dense = L * per_layer + h * V;
  return 6 * dense + 6 * L * static_cast<double>(seq) * q;  // causal attention: half of 12·L·s·q
}

nlohmann::json BenchResult::profile_json() const {
  if (!profile) return nullptr;
  auto r3 = [](double v) { return std::round(v * 1000) / 1000; };
  nlohmann::json fam = nlohmann::json::array();
  for (const auto& f : profile->families)
    fam.push_back({{"family", f.family},
                   {"ms_per_step", r3(f.ms_per_step)},
                   {"calls_per_step", f.calls_per_step}});
  return {{"step_ms", r3(profile->step_ms)},
          {"unattributed_ms", r3(profile->unattributed_ms)},
          {"families", fam}};
}

nlohmann::json BenchResult::to_json() const {
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  auto r3 = [](double v) { return std::round(v * 1000) / 1000; };
  return {{"arch", arch},
          {"layers", layers},
          {"layer_types", layer_types},
          {"device", device},
          {"dtype", dtype},
          {"fp8", fp8},
          {"residual", residual},
          {"recompute", recompute},
          {"fp8_breakdown_ms",
           fp8_breakdown_ms.empty() ? nlohmann::json(nullptr) : nlohmann::json(fp8_breakdown_ms)},
          {"attention", attention},
          {"cuda_graph", cuda_graph},
          {"cuda_graph_reason",
           cuda_graph_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(cuda_graph_reason)},
          {"params", params},
          {"num_layers", num_layers},
          {"batch", batch},
          {"seq", seq},
          {"warmup", warmup},
          {"steps", steps},
          {"ms_per_step", r3(ms_per_step)},
          {"ms_min", r3(ms_min)},
          {"ms_max", r3(ms_max)},
          {"tokens_per_s", std::round(tokens_per_s)},
          {"flops_per_token", flops_per_token},
          {"model_tflops", r3(model_tflops)},
          {"gemm_peak_tflops",
           opt(gemm_peak_tflops ? std::optional<double>(r3(*gemm_peak_tflops)) : std::nullopt)},
          {"mfu", opt(mfu ? std::optional<double>(r3(*mfu)) : std::nullopt)},
          {"peak_mem_gib", r3(peak_mem_gib)},
          {"first_loss", r3(first_loss)},
          {"last_loss", r3(last_loss)},
          {"profile", profile_json()},
          {"train_loop",
           train_loop ? nlohmann::json{{"warmup", train_loop->warmup},
                                       {"steps", train_loop->steps},
                                       {"grad_accum", train_loop->grad_accum},
                                       {"ms_per_step", r3(train_loop->ms_per_step)},
                                       {"tokens_per_s", std::round(train_loop->tokens_per_s)},
                                       {"peak_mem_gib", r3(train_loop->peak_mem_gib)},
                                       {"last_loss", r3(train_loop->last_loss)},
                                       {"attention", train_loop->attention},
                                       {"cuda_graph", train_loop->cuda_graph},
                                       {"cuda_graph_reason",
                                        train_loop->cuda_graph_reason.empty()
                                            ? nlohmann::json(nullptr)
                                            : nlohmann::json(train_loop->cuda_graph_reason)}}
                      : nlohmann::json(nullptr)}};
}

namespace {

// One micro-batch per optimizer step on random ids (bench.h).
BenchResult bench_step(const Recipe& r, const BenchOptions& opt) {
  GRAFT_INPUT_CHECK(opt.steps >= 1 && opt.warmup >= 0, "steps = ", opt.steps,
                    ", warmup = ", opt.warmup, ", expected steps >= 1 and warmup >= 0");
  const Device dev = r.device;
  const int64_t B = r.train.batch_size, S = r.data.seq_len;
  auto say = [&](const std::string& s) {
    if (opt.log) *opt.log << "bench: " << s << std::endl;
  };
  BenchResult res;
  res.device = dev.str();
  res.warmup = opt.warmup;
  res.steps = opt.steps;
  res.batch = B;
  res.seq = S;

  if (dev.is_cuda()) {
    res.gemm_peak_tflops = gemm_peak_tflops(dev, opt.gemm_size, opt.gemm_reps);
    say(str("bf16 ", opt.gemm_size, "^3 GEMM: ", *res.gemm_peak_tflops, " TFLOP/s"));
    device_backend().synchronize(dev);
    device_backend().reset_peak(dev);
  }

  // The model as the trainer builds it (bf16 on the CPU is emulated in f32): one process, its
  // gradients in buckets, AdamW over the buckets' pieces.
  ModelRecipe m = r.model;
  const bool emulate_bf16 = r.precision.params == DType::kBF16 && dev.is_cpu();
  const auto groups = single_process_groups();
  BuildContext ctx{dev, emulate_bf16 ? DType::kF32 : r.precision.params, groups, nullptr};
  ctx.fp32_residual = r.precision.fp32_residual();  // precision.residual: f32
  if (r.precision.fp8.enabled()) ctx.fp8 = std::make_shared<te::Fp8State>(r.precision.fp8, dev);
  // Set-up phases are timed in the log (host clock; what a user waits for before step 1).
  auto since = [t = std::chrono::steady_clock::now()]() mutable {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - t).count();
    t = now;
    return std::round(s * 100) / 100;
  };
  std::unique_ptr<CausalLM> model = build_model_from_recipe(m, ctx);
  model->set_activation_recompute(r.train.recompute);  // as the trainer does
  res.recompute = r.train.recompute;
  const double t_build = since();
  model->init_weights(static_cast<uint64_t>(r.train.seed));
  const double t_init = since();
  std::unique_ptr<GradBuckets> buckets =
      attach_grad_buckets(*model, groups->dp_cp, GradBucketOptions{r.parallel.bucket_mb, false});
  AdamW optim(buckets->owned_pieces(), r.optim, emulate_bf16, nullptr);
  optim.set_tp_group(groups->tp.get());  // the gradient norm of the whole model under tp
  optim.sync_weights();
  say(str("set-up: model built in ", t_build, " s, weights initialised in ", t_init,
          " s, gradient buckets and optimizer in ", since(), " s"));
  const ModelConfig& c = model->config();
  res.arch = c.arch;
  res.layers = r.model.layers;
  res.layer_types = model->decoder_layer_types();
  res.dtype = dtype_name(r.precision.params);
  res.fp8 = te::fp8_recipe_name(r.precision.fp8.recipe);
  res.residual =
      emulate_bf16 || r.precision.fp32_residual() ? "f32" : dtype_name(r.precision.params);
  if (emulate_bf16) res.dtype += " (emulated in f32)";
  res.num_layers = c.num_layers;
  for (auto& [name, p] : model->named_parameters()) res.params += p->value.numel();

  // Seeded random token ids, uploaded once, and their shifted targets made on the device.
  std::mt19937_64 rng(static_cast<uint64_t>(r.data.seed));
  std::uniform_int_distribution<int64_t> tok(0, c.vocab_size - 1);
  std::vector<int64_t> ids(static_cast<size_t>(B * S));
  for (auto& t : ids) t = tok(rng);
  LmInputs batch;
  batch.input_ids = Tensor::from_vector(ids, {B, S}).to(dev);
  batch.targets = Tensor::empty({B, S}, DType::kI64, dev);
  ShiftLabelsParams sp;
  sp.labels = static_cast<const int64_t*>(batch.input_ids.raw());
  sp.targets = static_cast<int64_t*>(batch.targets.raw());
  sp.batch = B;
  sp.seq = S;
  sp.device = dev;
  shift_labels(sp);

  // On a GPU the step has no host sync (as in the trainer): the loss stays on the device and the
  // AdamW kernel clips from the device norm; the loss is read after the step's timing.
  const double lr = r.optim.lr;
  const bool device_step = dev.is_cuda();
  Tensor stats = Tensor::zeros({2}, DType::kF32, dev);  // loss, gradient norm²
  Tensor norm_slot = stats.slice(0, 1, 1);
  double host_loss = 0;
  // train.cuda_graph: the same device step with AdamW's lr and count staged in device memory,
  // captured after two eager warm-up steps and replayed (cuda_graph_step.h).
  std::unique_ptr<CudaGraphStep> graph;
  if (r.train.cuda_graph) {
    graph = std::make_unique<CudaGraphStep>(
        dev, [&](const std::string& s) { say(s); },
        cuda_graph_refusal(
            {dev, groups->world->size(), ctx.fp8 && ctx.fp8->profile().enabled(), false}));
    if (ctx.fp8) {
      graph->set_before_capture([&] { ctx.fp8->advance_generation(); });  // the capture casts
      graph->set_on_discard([&] { ctx.fp8->advance_generation(); });
    }
  }
  auto graph_body = [&] {
    buckets->zero_grad();
    stats.zero_();
    model->forward_backward(batch, true, 1.0, &stats);
    buckets->finish();
    optim.grad_norm_sq_on_device(norm_slot);
    optim.step_staged(r.optim.grad_clip, static_cast<const float*>(norm_slot.raw()),
                      static_cast<const float*>(stats.raw()));
    if (ctx.fp8) ctx.fp8->end_step(*groups->world);
  };
  auto eager_step = [&] {
    buckets->zero_grad();
    if (device_step) {
      stats.zero_();
      model->forward_backward(batch, true, 1.0, &stats);
      buckets->finish();
      optim.grad_norm_sq_on_device(norm_slot);
      optim.step_on_device(lr, r.optim.grad_clip, static_cast<const float*>(norm_slot.raw()),
                           static_cast<const float*>(stats.raw()));
    } else {
      host_loss = model->forward_backward(batch, true, 1.0);
      buckets->finish();
      const double norm = optim.grad_norm();
      const double scale =
          (r.optim.grad_clip > 0 && norm > r.optim.grad_clip) ? r.optim.grad_clip / norm : 1.0;
      optim.step(lr, scale);
    }
    if (ctx.fp8) ctx.fp8->end_step(*groups->world);  // amax update; weights re-cast next step
  };
  bool replayed = false;  // the last step was a graph replay
  auto step = [&] {
    replayed = false;
    if (!graph || !device_step) return eager_step();
    optim.stage_step(lr);
    replayed = graph->run({}, graph_body);
    if (replayed && ctx.fp8) ctx.fp8->advance_generation();  // end_step's host half
  };
  auto step_loss = [&] {
    return device_step ? static_cast<double>(stats.to(Device::cpu()).to_f32_vector()[0])
                       : host_loss;
  };
  say(str(res.arch, " ", res.params, " parameters, ", res.layers, " layers, ", res.dtype,
          ctx.fp8 ? str(", FP8 ", res.fp8, " scaling (", ctx.fp8->num_slots(), " FP8 tensors)")
                  : std::string(),
          res.recompute ? ", activation recompute" : "", ", batch ", B, " x ", S, " on ",
          res.device, ": ", opt.warmup, " warm-up + ", opt.steps, " steps"));
  double loss = 0;
  for (int64_t i = 0; i < opt.warmup; ++i) {
    step();
    loss = step_loss();
    if (i == 0) res.first_loss = loss;
  }
  if (ctx.fp8) ctx.fp8->profile().reset();  // the breakdown covers the timed steps
  // What the timed steps ran, as the kernels report it (replays run no host code: the report of
  // the warm-up steps, the captured one included, stands for them).
  if (!graph || !graph->captured()) model->reset_attention_report();
  std::vector<double> ms;
  bool all_replayed = true;
  for (int64_t i = 0; i < opt.steps; ++i) {
    ms.push_back(time_ms(dev, step));
    all_replayed = all_replayed && replayed;
    loss = step_loss();
    if (opt.warmup == 0 && i == 0) res.first_loss = loss;
    say(str("step ", i + 1, ": ", ms.back(), " ms, loss ", loss));
  }
  res.last_loss = loss;
  if (graph) {
    res.cuda_graph = all_replayed && graph->captured();
    res.cuda_graph_reason = graph->fallback_reason();
    if (!res.cuda_graph && res.cuda_graph_reason.empty())
      res.cuda_graph_reason = str("the timed steps did not all replay the graph (warm-up ",
                                  opt.warmup, " < 3 eager steps before the capture?)");
    say(res.cuda_graph
            ? str("CUDA graph: ", graph->replays(), " replays of ", graph->num_nodes(), " nodes")
            : str("CUDA graph: not used: ", res.cuda_graph_reason));
  }
  if (ctx.fp8 && ctx.fp8->profile().enabled()) {
    res.fp8_breakdown_ms = ctx.fp8->profile().per_step_ms();
    say(str("FP8 regions per step (ms, GRAFT_FP8_PROFILE; events around each region): ",
            nlohmann::json(res.fp8_breakdown_ms).dump()));
  }
  res.attention = model->attention_report().summary();
  if (opt.profile && dev.is_cuda()) {
    kernels::KernelProfile prof;
    double total = 0;
    // Eager steps: the per-family events cannot be attributed inside a replayed graph.
    for (int64_t i = 0; i < opt.steps; ++i) total += time_ms(dev, eager_step);
    prof.collect();
    BenchProfile bp;
    const double n = static_cast<double>(opt.steps);
    bp.step_ms = total / n;
    double attributed = 0;
    for (const auto& [name, f] : prof.families()) {
      bp.families.push_back({name, f.ms / n, static_cast<double>(f.calls) / n});
      attributed += f.ms / n;
    }
    std::sort(bp.families.begin(), bp.families.end(),
              [](const auto& a, const auto& b) { return a.ms_per_step > b.ms_per_step; });
    bp.unattributed_ms = bp.step_ms - attributed;
    for (const auto& f : bp.families)
      say(str("profile: ", f.family, " ", f.ms_per_step, " ms/step (", f.calls_per_step,
              " calls)"));
    say(str("profile: unattributed ", bp.unattributed_ms, " of ", bp.step_ms, " ms/step"));
    res.profile = bp;
  }
  res.ms_per_step = median(ms);
  res.ms_min = *std::min_element(ms.begin(), ms.end());
  res.ms_max = *std::max_element(ms.begin(), ms.end());
  const double tokens = static_cast<double>(B * S);
  res.tokens_per_s = tokens / (res.ms_per_step * 1e-3);
  res.flops_per_token = model_flops_per_token(c, S);
  res.model_tflops = res.flops_per_token * tokens / (res.ms_per_step * 1e-3) / 1e12;
  if (res.gemm_peak_tflops) res.mfu = res.model_tflops / *res.gemm_peak_tflops;
  if (dev.is_cuda())
    res.peak_mem_gib = static_cast<double>(device_backend().peak_bytes(dev)) / (1ULL << 30);
  return res;
}

}  // namespace

BenchResult run_bench(const Recipe& r, const BenchOptions& opt) {
  BenchResult res = bench_step(r, opt);  // its model and optimizer are freed on return
  if (opt.train_loop) res.train_loop = run_train_loop_bench(r, opt);
  return res;
}

}  // namespace graft
