#include "framework/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "framework/data/prepare.h"
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "framework/train/cuda_graph_step.h"
#include "framework/train/tensorboard.h"
#include "layers/te/fp8_state.h"
#include "parallel/launch.h"
#include "parallel/parallel_state.h"
#include "parallel/tp_collectives.h"
#include "parallel/watchdog.h"

namespace graft {

namespace {
double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// Discards what rank > 0 would print: only rank 0 writes progress lines.
std::ostream& null_stream() {
  static std::ostream s(nullptr);
  return s;
}

Trainer::Trainer(Recipe recipe, TrainOptions options)
    : recipe_(std::move(recipe)), options_(std::move(options)) {
  const Recipe& r = recipe_;
  // Layout first: an impossible one is an error before anything is allocated.
  const WorldInfo& world = world_info();
  Device device;
  try {
    device = bind_local_device(r.device, r.parallel.backend == "mpi");
    groups_ = make_parallel_groups(r.parallel, world, device, r.file);
    GRAFT_INPUT_CHECK(r.parallel.cp == 1 || r.data.seq_len % (2 * r.parallel.cp) == 0, r.file,
                      ": data.seq_len = ", r.data.seq_len,
                      " is not a multiple of 2 * parallel.cp = ", 2 * r.parallel.cp,
                      " (context parallelism cuts each row into 2 * cp chunks)");
    if (r.parallel.sequence_parallel)  // the sequence shards of each cp rank's rows
      check_sp_divisible(
          r.data.seq_len / r.parallel.cp, *groups_->tp,
          (r.file + (r.parallel.cp > 1 ? ": data.seq_len / parallel.cp" : ": data.seq_len"))
              .c_str());
  } catch (const CollectiveInputError&) {
    throw;
  } catch (const InputError& e) {  // the same on every rank: printed once, by rank 0
    throw CollectiveInputError(e.what());
  }
  is_rank0_ = world.rank == 0;
  if (!is_rank0_) {
    options_.out = &null_stream();
    options_.metrics_out.clear();
  }
  if (world.size > 1) Watchdog::instance().start(r.parallel.timeout_s, world.rank);
  const int64_t dp = groups_->layout.dp;
  // Data. Rank 0 prepares it first (the others then find it prepared).
  bool prepared_now = false;
  if (world.size > 1 && !is_rank0_) groups_->world->barrier();
  data_dir_ = ensure_dataset(r.data, &prepared_now);
  if (world.size > 1 && is_rank0_) groups_->world->barrier();
  dataset_ = std::make_unique<TokenDataset>(TokenDataset::open(data_dir_));
  if (prepared_now)
    *options_.out << "data: prepared " << dataset_->size() << " tokens from " << r.data.files.size()
                  << " files into " << data_dir_ << "\n";
  tokenizer_ = make_tokenizer(dataset_->tokenizer());
  GRAFT_INPUT_CHECK(dataset_->vocab_size() <= r.model.config.vocab_size, r.file,
                    ": model vocab_size = ", r.model.config.vocab_size,
                    " is smaller than the data's tokenizer vocabulary (", dataset_->vocab_size(),
                    ", ", dataset_->tokenizer(), ")");
  SamplerConfig sc;
  sc.seq_len = r.data.seq_len;
  sc.seed = static_cast<uint64_t>(r.data.seed);
  sc.rank = groups_->dp->rank();
  sc.world = groups_->dp->size();
  sc.document_mask = r.data.document_mask;
  std::vector<std::pair<int64_t, int64_t>> held_out;  // data.validation.fraction's windows
  if (r.data.validation.fraction > 0)
    held_out = held_out_ranges(dataset_->size(), sc.seq_len, r.data.validation.fraction);
  sampler_ = std::make_unique<Sampler>(dataset_.get(), sc, held_out);
  evaluator_ = make_evaluator(r, *dataset_, *groups_->world, sc.rank, sc.world);

  state_.data_seed = r.data.seed;
  state_.init_seed = r.train.seed;
  state_.schedule = schedule_name(r.schedule.type);
  state_.config_hash = r.config_hash(dp);
  state_.tokenizer = dataset_->tokenizer() == "byte" ? "byte" : "tokenizer.json";
  schedule_.config = r.schedule;
  schedule_.peak_lr = r.optim.lr;
  schedule_.total_steps = r.train.steps;

  // The checkpoint to resume from, checked against this recipe before anything heavy happens.
  std::string ckpt;
  if (r.checkpoint.resume == "auto") {
    if (!r.checkpoint.dir.empty()) ckpt = find_latest_checkpoint(r.checkpoint.dir);
  } else if (r.checkpoint.resume != "none") {
    ckpt = r.checkpoint.resume;
    GRAFT_INPUT_CHECK(is_complete_checkpoint(ckpt), r.file, ": checkpoint.resume = ", ckpt,
                      " is not a complete checkpoint (no COMMIT, manifest.json or "
                      "trainer_state.json)");
  }
  if (!ckpt.empty()) check_resume(ckpt);

  // Model. bf16 on the CPU is emulated (f32 storage holding bf16 values), see recipe.h.
  ModelRecipe m = r.model;
  const bool emulate_bf16 = r.precision.params == DType::kBF16 && device.is_cpu();
  BuildContext ctx{device, emulate_bf16 ? DType::kF32 : r.precision.params, groups_, nullptr};
  ctx.fp32_residual = r.precision.fp32_residual();  // precision.residual: f32
  if (r.precision.fp8.enabled()) ctx.fp8 = std::make_shared<te::Fp8State>(r.precision.fp8, device);
  try {
    model_ = build_model_from_recipe(m, ctx);
  } catch (const InputError& e) {  // a layout the model cannot split: the same on every rank
    throw CollectiveInputError(str(r.file, ": ", e.what()));
  }
  if (!ckpt.empty())
    load_model_weights(*model_, ckpt);
  else if (!m.hf_dir.empty())
    load_hf_weights(*model_, m.hf_dir);
  else
    model_->init_weights(static_cast<uint64_t>(r.train.seed));
  model_->set_activation_recompute(r.train.recompute);
  GradBucketOptions bucket_options{r.parallel.bucket_mb, r.parallel.zero == 1};
  bucket_options.zeroing = options_.grad_zeroing;
  buckets_ = attach_grad_buckets(*model_, groups_->dp_cp, bucket_options);
  optim_ = std::make_unique<AdamW>(buckets_->owned_pieces(), r.optim, emulate_bf16,
                                   buckets_->sharded() ? groups_->dp_cp.get() : nullptr);
  optim_->set_tp_group(groups_->tp.get());
  if (!ckpt.empty()) resume(ckpt);
  optim_->sync_weights();     // with emulated bf16: the forward weights hold bf16 values
  buckets_->gather_params();  // ZeRO: each rank wrote only its shard of them
  mfu_ = make_mfu_meter(r, model_->config(), device, groups_->world->size());
}

Trainer::~Trainer() = default;

std::string Trainer::layout_summary() const {
  const ParallelGroups& g = *groups_;
  if (g.world->size() == 1) return "";
  const double mib = 1024.0 * 1024.0;
  return str(", ", g.world->size(), " ranks (tp ", g.layout.tp, ", cp ", g.layout.cp, ", dp ",
             g.layout.dp, ", ", g.backend, ")", buckets_->sharded() ? ", ZeRO-1" : "", "; ",
             buckets_->num_buckets(), " gradient buckets; per rank: weights + gradients ",
             static_cast<int64_t>(buckets_->bytes_per_rank() / mib), " MiB, optimizer state ",
             static_cast<int64_t>(optim_->state_bytes() / mib), " MiB");
}

void Trainer::check_resume(const std::string& ckpt) {
  TrainerState s = read_trainer_state(ckpt);
  if (s.config_hash != state_.config_hash) {
    std::string key = "(unknown)";
    try {
      YAML::Node old = YAML::LoadFile(ckpt + "/recipe.yaml");
      key = first_difference(recipe_identity(old), recipe_.identity());
    } catch (const YAML::Exception&) {
    }
    throw InputError(str(recipe_.file, ": cannot resume from ", ckpt,
                         ": it was written with a different recipe (first difference at key '", key,
                         "'); restore the key or set checkpoint.resume: none / a new "
                         "checkpoint.dir"));
  }
}

void Trainer::resume(const std::string& ckpt) {
  TrainerState s = read_trainer_state(ckpt);
  optim_->load_state(ShardedReader::open(ckpt));
  optim_->set_steps_taken(s.optimizer_steps);
  sampler_->set_position(s.data_position);
  resume_fp8(ckpt);
  s.config_hash = state_.config_hash;
  state_ = s;
  resumed_from_ = ckpt;
}

void Trainer::resume_fp8(const std::string& ckpt) {
  const auto& fp8 = model_->context().fp8;
  if (!fp8) return;
  const ShardedReader reader = ShardedReader::open(ckpt);
  bool any = false;
  for (const auto& n : reader.names()) any = any || n.rfind(kFp8Prefix, 0) == 0;
  const char* recipe = te::fp8_recipe_name(fp8->config().recipe);
  if (!fp8->delayed()) {
    *options_.out << "fp8: " << recipe << " scaling is stateless"
                  << (any ? "; the checkpoint's delayed-scaling state is not used" : "") << "\n";
    return;
  }
  if (!any) {
    *options_.out << "fp8: " << ckpt << " has no FP8 scaling state: the amax histories start "
                  << "fresh (scales 1)\n";
    return;
  }
  std::map<std::string, Tensor> tensors;
  for (const auto& name : fp8->state_names())
    if (reader.has(kFp8Prefix + name)) tensors[name] = reader.read(kFp8Prefix + name);
  fp8->load_state(tensors, reader.manifest_path());
  *options_.out << "fp8: restored " << fp8->num_slots() << " amax histories and scales from "
                << ckpt << "\n";
}

std::string Trainer::save(TrainResult& result) {
  // Each rank writes what it owns: under ZeRO-1 its shard of every parameter and of the optimizer
  // state (flat ranges of the parameter's box); otherwise the first data-parallel replica writes
  // its box of everything and the other replicas write nothing. Under tp each piece is written
  // once: by tp rank 0 for a parameter whole on every rank, by replica 0 of a replicated split one.
  CheckpointContents c;
  const int tp_rank = groups_->tp->rank();
  // Padded vocabulary rows are not stored (drop_padding): the checkpoint holds logical shapes.
  auto piece = [&c](const std::string& name, const ParamPiece& pp, const Tensor& data) {
    TensorPiece t = spec_piece(name, pp.param->spec, pp.param->value);
    t.flat_offset = pp.offset;
    t.flat_len = pp.numel;
    t.data = data;
    if (drop_padding(t, pp.param->spec)) c.pieces.push_back(std::move(t));
  };
  const bool writer = buckets_->sharded() || groups_->dp_cp->rank() == 0;
  // The FP8 scaling state is the same on every rank (its amaxes are reduced over the world).
  if (const auto& fp8 = model_->context().fp8; fp8 && groups_->world->rank() == 0)
    for (auto& [name, t] : fp8->state_tensors())
      c.pieces.push_back(spec_piece(kFp8Prefix + name, ShardSpec::replicated(t.shape()), t));
  if (writer) {
    for (const ParamPiece& pp : optim_->pieces())
      if (pp.param->spec.is_primary(tp_rank))
        piece(kModelPrefix + logical_param_name(pp.name, pp.param->spec), pp,
              pp.value().to(Device::cpu()));
    for (const auto& sp : optim_->state_pieces())
      if (sp.piece.param->spec.is_primary(tp_rank))
        piece(str(kOptimPrefix, sp.kind, "/",
                  logical_param_name(sp.piece.name, sp.piece.param->spec)),
              sp.piece, sp.data);
  }
  c.state = state_;
  c.recipe_yaml = recipe_.resolved_yaml();
  c.hf_config = hf_config_for_export(model_->config(), recipe_.precision.params);
  if (dataset_->tokenizer() != "byte") c.tokenizer_file = dataset_->tokenizer();
  const ParallelConfig& l = groups_->layout;
  c.layout = {{"world", groups_->world->size()},
              {"tp", l.tp},
              {"cp", l.cp},
              {"dp", l.dp},
              {"zero", l.zero},
              {"sequence_parallel", l.sequence_parallel},
              {"backend", groups_->backend}};
  result.last_checkpoint =
      save_checkpoint(recipe_.checkpoint.dir, c, recipe_.checkpoint.keep_last, *groups_->world);
  return result.last_checkpoint;
}

TrainResult Trainer::run() {
  const Recipe& r = recipe_;
  TrainResult result;
  result.resumed_from = resumed_from_;
  ProgressLog log(*options_.out,
                  r.logging.progress == ProgressMode::kLine ||
                      (r.logging.progress == ProgressMode::kAuto && options_.live_line),
                  options_.metrics_out, /*append=*/!resumed_from_.empty());
  if (!r.logging.tensorboard.empty() && is_rank0_)
    log.set_tensorboard(std::make_unique<TensorBoardWriter>(r.logging.tensorboard));
  const int64_t end =
      r.train.stop_after > 0 ? std::min(r.train.stop_after, r.train.steps) : r.train.steps;
  if (!resumed_from_.empty())
    log.message(str("resumed from ", resumed_from_, " at step ", state_.step));
  const int64_t params = [&] {
    int64_t n = 0;
    for (auto& [name, p] : model_->named_parameters()) n += p->value.numel();
    return n;
  }();
  std::string layer_types;
  for (const auto& t : model_->decoder_layer_types())
    layer_types += (layer_types.empty() ? "" : ", ") + t;
  if (state_.step < end)
    log.message(str("training ", r.model.config.arch, " (", params, " parameters, ", layer_types,
                    ") for steps ", state_.step + 1, "..", end, " of ", r.train.steps, " on ",
                    model_->device().str(), layout_summary()));
  if (const auto& fp8 = model_->context().fp8; fp8 && state_.step < end) {
    const te::Fp8Config& fc = fp8->config();
    std::string msg = str(
        "fp8: ", te::fp8_recipe_name(fc.recipe), " scaling, ",
        fc.format == te::Fp8Format::kHybrid ? "E4M3 forward, E5M2 gradients" : "E4M3 everywhere",
        ", ", fp8->num_slots(), " FP8 tensors in ", fp8->num_slots() / 3,
        " GEMMs (embedding, norms, attention and LM head in high precision)");
    if (fp8->delayed())
      msg += str("; amax history ", fc.amax_history_len, ", ",
                 fc.amax_compute_algo == te::AmaxAlgo::kMax ? "max" : "most_recent", ", margin ",
                 fc.margin);
    if (!fc.bf16_layers.empty()) {
      msg += "; decoder layers kept in high precision:";
      for (int64_t i : fc.bf16_layers) msg += str(" ", i);
    }
    log.message(msg);
  }
  if (evaluator_ && state_.step < end) log.message(evaluator_->describe());
  if (!mfu_.source.empty() && state_.step < end) log.message("mfu against " + mfu_.source);
  const double t_start = now_s();
  double window_tokens = 0, window_time = 0;
  const double tokens_per_step = static_cast<double>(r.train.batch_size * r.train.grad_accum *
                                                     r.data.seq_len * groups_->layout.dp);
  const int64_t first = state_.step;
  // One process on a GPU: the step runs without host syncs until its end (see the loop).
  // (bf16 emulation is CPU-only, so the GPU's optimizer always writes its weights itself.)
  const bool device_step =
      model_->device().is_cuda() && groups_->world->size() == 1 && !buckets_->sharded();
  Tensor stats, norm_slot;  // f32 [2] on the device: the step's loss sum and gradient norm²
  if (device_step) {
    stats = Tensor::zeros({2}, DType::kF32, model_->device());
    norm_slot = stats.slice(0, 1, 1);
  }
  // train.cuda_graph: the device step captured once and replayed (cuda_graph_step.h).
  const auto& fp8_state = model_->context().fp8;
  std::unique_ptr<CudaGraphStep> graph;
  std::vector<LmInputs> graph_in;  // fixed device buffers of the micro-batches a graph reads
  Tensor graph_divisor;            // i64 [1] on the device: the step's counted targets
  if (r.train.cuda_graph && state_.step < end) {
    CudaGraphConditions gc;
    gc.device = model_->device();
    gc.world = groups_->world->size();
    gc.fp8_profile = fp8_state && fp8_state->profile().enabled();
    gc.fault_hook = static_cast<bool>(options_.after_backward);
    std::string refused = cuda_graph_refusal(gc);
    if (refused.empty() && !device_step)
      refused = "the step is not the one-process device step (parallel.zero?)";
    graph = std::make_unique<CudaGraphStep>(
        model_->device(), [&log](const std::string& s) { log.message(s); }, refused);
    if (fp8_state) {
      // The capture must cast the FP8 weights itself even when an evaluation after the last
      // warm-up step already cast them for this generation (the graph would replay those stale
      // copies, whose memory the next evaluation's casts release).
      graph->set_before_capture([&fp8_state] { fp8_state->advance_generation(); });
      graph->set_on_discard([&fp8_state] { fp8_state->advance_generation(); });
    }
  }
  const bool graph_mode = graph && graph->fallback_reason().empty();
  std::string graph_attention;  // what the captured step's attention ran (its host code ran once)
  for (int64_t step = state_.step; step < end; ++step) {
    const double t0 = now_s();
    Watchdog::instance().set_step(step + 1);
    if (!graph_mode) buckets_->zero_grad();  // the graph's step zeroes the gradients itself
    model_->reset_attention_report();
    bool replayed = false;  // a graph replay: no host code ran, the capture's report stands
    // The loss is the mean over every counted target of the step's micro-batches on all ranks
    // (document starts and SFT masks make the counts differ): each micro-batch contributes its
    // sum divided by that global count, and the gradients are scaled by the group size because
    // the data-parallel reduction averages them.
    std::vector<LmInputs> micro;
    double counted = 0;
    for (int64_t a = 0; a < r.train.grad_accum; ++a) {
      micro.push_back(sampler_->next(r.train.batch_size));
      counted += static_cast<double>(micro.back().num_targets);
    }
    // The cp ranks of a replica hold the same rows (each keeps its chunks): count over dp only.
    counted = groups_->dp->all_reduce_scalar(counted, ReduceOp::kSum);
    const double lr = schedule_.lr_at(step);
    double loss = 0, norm = 0;
    bool skip = false;
    if (graph_mode) {
      // The device step below, with every per-step value in device memory: the micro-batches in
      // fixed buffers, AdamW's lr and count staged; the FP8 scale update is part of the step.
      // The step's target count (it changes whenever a window holds a document end) reaches the
      // loss kernels through device memory too, so the graph's key is the shapes alone.
      const int64_t divisor = std::max<int64_t>(1, static_cast<int64_t>(counted));
      const std::vector<int64_t> key = {r.train.batch_size, r.data.seq_len, r.train.grad_accum};
      if (!graph_divisor.defined())
        graph_divisor = Tensor::empty({1}, DType::kI64, model_->device());
      graph_divisor.copy_from(Tensor::from_vector(std::vector<int64_t>{divisor}, {1}));
      for (int64_t a = 0; a < r.train.grad_accum; ++a) {
        // Every tensor of the batch in a device buffer of its own, made at the first step
        // (before any capture) and refilled each step: queued copies, no host wait.
        auto fixed = [&](const Tensor& src, Tensor& dst) {
          if (!src.defined()) return;
          if (!dst.defined()) dst = Tensor::empty(src.shape(), src.dtype(), model_->device());
          dst.copy_from(src);
        };
        if (graph_in.size() <= static_cast<size_t>(a)) graph_in.emplace_back();
        fixed(micro[a].input_ids, graph_in[a].input_ids);
        fixed(micro[a].targets, graph_in[a].targets);
        fixed(micro[a].positions, graph_in[a].positions);
        fixed(micro[a].segment_ids, graph_in[a].segment_ids);
        fixed(micro[a].attention_mask, graph_in[a].attention_mask);
        graph_in[a].num_targets = micro[a].num_targets;
        graph_in[a].loss_divisor = divisor;
        graph_in[a].loss_divisor_at = graph_divisor;
      }
      optim_->stage_step(lr);
      auto body = [&] {
        buckets_->zero_grad();
        stats.zero_();
        for (int64_t a = 0; a < r.train.grad_accum; ++a) {
          buckets_->set_sync(a + 1 == r.train.grad_accum);
          model_->forward_backward(graph_in[a], true, 1.0, &stats);
        }
        buckets_->finish();
        optim_->grad_norm_sq_on_device(norm_slot);
        optim_->step_staged(r.optim.grad_clip, static_cast<const float*>(norm_slot.raw()),
                            static_cast<const float*>(stats.raw()));
        if (fp8_state) fp8_state->end_step(*groups_->world);
      };
      replayed = graph->run(key, body);
      if (replayed && fp8_state) fp8_state->advance_generation();
      if (replayed && graph_attention.empty())
        graph_attention = model_->attention_report().summary();
      const std::vector<float> host = stats.to(Device::cpu()).to_f32_vector();
      loss = host[0];
      norm = std::sqrt(static_cast<double>(host[1]));
      skip = !std::isfinite(loss) || !std::isfinite(norm);
      if (skip) optim_->set_steps_taken(optim_->steps_taken() - 1);  // the kernel skipped it
    } else if (device_step) {
      // No host round trip inside the step: the loss accumulates on the device, the norm stays
      // there, the AdamW kernel clips and skips from them; one read of both after the update.
      stats.zero_();
      for (int64_t a = 0; a < r.train.grad_accum; ++a) {
        micro[a].loss_divisor = std::max<int64_t>(1, static_cast<int64_t>(counted));
        buckets_->set_sync(a + 1 == r.train.grad_accum);
        model_->forward_backward(micro[a], true, 1.0, &stats);
      }
      if (options_.after_backward) options_.after_backward(step, *model_);
      buckets_->finish();
      optim_->grad_norm_sq_on_device(norm_slot);
      optim_->step_on_device(lr, r.optim.grad_clip, static_cast<const float*>(norm_slot.raw()),
                             static_cast<const float*>(stats.raw()));
      const std::vector<float> host = stats.to(Device::cpu()).to_f32_vector();
      loss = host[0];
      norm = std::sqrt(static_cast<double>(host[1]));
      skip = !std::isfinite(loss) || !std::isfinite(norm);
      if (skip) optim_->set_steps_taken(optim_->steps_taken() - 1);  // the kernel skipped it
    } else {
      for (int64_t a = 0; a < r.train.grad_accum; ++a) {
        micro[a].loss_divisor = std::max<int64_t>(1, static_cast<int64_t>(counted));
        buckets_->set_sync(a + 1 == r.train.grad_accum);
        loss += model_->forward_backward(micro[a], true, groups_->dp_cp->size());
      }
      if (options_.after_backward) options_.after_backward(step, *model_);
      buckets_->finish();
      loss = groups_->dp->all_reduce_scalar(loss, ReduceOp::kSum);  // already summed over cp
      norm = optim_->grad_norm();
      skip = !std::isfinite(loss) || !std::isfinite(norm);
    }
    if (skip) {
      ++state_.skipped_total;
      ++state_.consecutive_skipped;
      if (state_.consecutive_skipped > r.train.max_consecutive_skips) {
        log.finish();
        throw InputError(str(r.file, ": training stopped at step ", step + 1, " after ",
                             state_.consecutive_skipped, " consecutive non-finite steps (loss ",
                             loss, ", grad norm ", norm, "; train.max_consecutive_skips = ",
                             r.train.max_consecutive_skips, "); lower optim.lr or check the data"));
      }
    } else {
      state_.consecutive_skipped = 0;
      if (!device_step) {
        const double scale =
            (r.optim.grad_clip > 0 && norm > r.optim.grad_clip) ? r.optim.grad_clip / norm : 1.0;
        optim_->step(lr, scale);
      }
      buckets_->gather_params();
      state_.lr = lr;
    }
    // FP8: the amaxes of this step reduced, histories rolled, scales updated; weight copies are
    // cast again at the next forward.
    if (fp8_state && !graph_mode) fp8_state->end_step(*groups_->world);
    state_.step = step + 1;
    state_.optimizer_steps = optim_->steps_taken();
    state_.data_position = sampler_->position();
    const double dt = now_s() - t0;
    window_tokens += tokens_per_step;
    window_time += dt;

    StepMetrics sm;
    sm.step = step + 1;
    sm.total = r.train.steps;
    sm.loss = loss;
    sm.lr = lr;
    sm.grad_norm = norm;
    sm.skipped = skip;
    sm.elapsed_s = now_s() - t_start;
    sm.tokens_per_s = window_time > 0 ? window_tokens / window_time : 0;
    sm.eta_s =
        sm.elapsed_s / static_cast<double>(step + 1 - first) * static_cast<double>(end - step - 1);
    sm.mfu = mfu_.mfu(sm.tokens_per_s);
    sm.peak_mem_gib = peak_mem_gib(model_->device());
    sm.attention = replayed ? graph_attention : model_->attention_report().summary();
    const bool eval_now = evaluator_ && evaluator_->due(step + 1, end);
    if (eval_now) {
      sm.eval_loss = evaluator_->evaluate(*model_, *groups_->dp_cp);
      result.evals.emplace_back(step + 1, *sm.eval_loss);
    }
    result.steps.push_back(sm);
    if (skip || eval_now || (step + 1) % r.logging.every == 0 || step + 1 == end || step == first) {
      log.log(sm);
      window_tokens = window_time = 0;
    }
    if (!r.checkpoint.dir.empty() && r.checkpoint.every > 0 &&
        (step + 1) % r.checkpoint.every == 0 && step + 1 != end)
      save(result);
  }
  log.finish();
  if (graph) {
    result.cuda_graph_replays = graph->replays();
    result.cuda_graph_reason = graph->fallback_reason();
  }
  result.wall_s = now_s() - t_start;
  if (!r.checkpoint.dir.empty() && (first < end || list_checkpoints(r.checkpoint.dir).empty())) {
    save(result);
    log.message(str("checkpoint: ", result.last_checkpoint));
  }
  // The sample: generated by the first model replica (under tp every rank of its tp group takes
  // part, since each holds a slice of the model), printed by rank 0.
  const bool sp = r.parallel.sequence_parallel && groups_->tp->size() > 1;
  if (r.train.sample_tokens > 0 && sp)
    log.message("sample: skipped (generation is not available with parallel.sequence_parallel)");
  if (r.train.sample_tokens > 0 && !sp && groups_->dp_cp->rank() == 0) {
    std::vector<int64_t> prompt{tokenizer_->eos_id()};
    for (int64_t id : tokenizer_->encode(r.train.sample_prompt)) prompt.push_back(id);
    GenerateOptions g;
    g.max_new_tokens = r.train.sample_tokens;
    g.stop_ids = {tokenizer_->eos_id()};
    g.temperature = r.train.sample_temperature;
    g.top_p = r.train.sample_top_p;
    g.seed = static_cast<uint64_t>(r.train.seed);
    std::vector<int64_t> out = model_->generate(prompt, g);
    result.sample = tokenizer_->decode(std::vector<int64_t>(out.begin() + 1, out.end()));
    const std::string how = g.temperature == 0 ? std::string("greedy")
                                               : str("temperature ", g.temperature, ", top-p ",
                                                     g.top_p, ", seed ", g.seed);
    log.message(str("sample (", how, "): ", result.sample));
  }
  RunSummary sum;
  sum.first_step = first;
  sum.last_step = state_.step;
  sum.tokens = tokens_per_step * static_cast<double>(state_.step - first);
  sum.total_tokens = tokens_per_step * static_cast<double>(state_.step);
  sum.wall_s = result.wall_s;
  sum.eval_configured = evaluator_ != nullptr;
  for (const auto& [at, loss] : result.evals) {
    if (!sum.best_eval || loss < *sum.best_eval) sum.best_eval = loss, sum.best_eval_step = at;
    sum.last_eval = loss;
    sum.last_eval_step = at;
  }
  sum.last_checkpoint = result.last_checkpoint;
  result.summary = format_summary(sum);
  log.message(result.summary);
  return result;
}

}  // namespace graft
