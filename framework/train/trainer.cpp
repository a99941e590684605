#include "framework/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "framework/data/prepare.h"
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "parallel/parallel_state.h"

namespace graft {

namespace {
double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Trainer::Trainer(Recipe recipe, TrainOptions options)
    : recipe_(std::move(recipe)), options_(std::move(options)) {
  const Recipe& r = recipe_;
  // Data.
  bool prepared_now = false;
  data_dir_ = ensure_dataset(r.data, &prepared_now);
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
  sampler_ = std::make_unique<Sampler>(dataset_.get(), sc);

  state_.data_seed = r.data.seed;
  state_.init_seed = r.train.seed;
  state_.schedule = schedule_name(r.schedule.type);
  state_.config_hash = r.config_hash();
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
  m.config.decoder.device = r.device;
  const bool emulate_bf16 = r.precision.params == DType::kBF16 && r.device.is_cpu();
  m.config.decoder.params_dtype = emulate_bf16 ? DType::kF32 : r.precision.params;
  model_ = build_model_from_recipe(m);
  if (!ckpt.empty())
    load_model_weights(*model_, ckpt);
  else if (!m.hf_dir.empty())
    load_hf_weights(*model_, m.hf_dir);
  else
    model_->init_weights(static_cast<uint64_t>(r.train.seed));
  model_->allocate_grads();
  model_->set_activation_recompute(r.train.recompute);
  optim_ = std::make_unique<AdamW>(model_->named_parameters(), r.optim, emulate_bf16);
  if (!ckpt.empty()) resume(ckpt);
  optim_->sync_weights();  // with emulated bf16: the forward weights hold bf16 values
}

Trainer::~Trainer() = default;

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
  s.config_hash = state_.config_hash;
  state_ = s;
  resumed_from_ = ckpt;
}

std::string Trainer::save(TrainResult& result) {
  // Single process for now: every parameter and its optimizer state as one whole piece (the box
  // its ShardSpec describes), written through the world group.
  CheckpointContents c;
  std::map<std::string, const Parameter*> by_name;
  for (auto& [name, p] : model_->named_parameters()) {
    by_name[name] = p;
    c.pieces.push_back(spec_piece(kModelPrefix + name, p->spec, p->value));
  }
  // state_tensors() names "m.<param>", "v.<param>", "master.<param>": optim/m/<param>, ...
  for (auto& [key, t] : optim_->state_tensors()) {
    const size_t dot = key.find('.');
    const std::string param = key.substr(dot + 1);
    c.pieces.push_back(
        spec_piece(str(kOptimPrefix, key.substr(0, dot), "/", param), by_name.at(param)->spec, t));
  }
  c.state = state_;
  c.recipe_yaml = recipe_.resolved_yaml();
  c.hf_config = hf_config_for_export(model_->config(), recipe_.precision.params);
  if (dataset_->tokenizer() != "byte") c.tokenizer_file = dataset_->tokenizer();
  result.last_checkpoint = save_checkpoint(recipe_.checkpoint.dir, c, recipe_.checkpoint.keep_last,
                                           *single_process_groups()->world);
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
                    r.device.str()));
  const double t_start = now_s();
  double window_tokens = 0, window_time = 0;
  const double tokens_per_step =
      static_cast<double>(r.train.batch_size * r.train.grad_accum * r.data.seq_len);
  const int64_t first = state_.step;
  for (int64_t step = state_.step; step < end; ++step) {
    const double t0 = now_s();
    model_->zero_grad();
    double loss = 0;
    for (int64_t a = 0; a < r.train.grad_accum; ++a) {
      Tensor ids = sampler_->next(r.train.batch_size);
      loss += model_->forward_backward(ids, ids, Tensor(), true, 1.0 / r.train.grad_accum);
    }
    loss /= static_cast<double>(r.train.grad_accum);
    if (options_.after_backward) options_.after_backward(step, *model_);
    const double norm = optim_->grad_norm();
    const bool skip = !std::isfinite(loss) || !std::isfinite(norm);
    const double lr = schedule_.lr_at(step);
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
      const double scale =
          (r.optim.grad_clip > 0 && norm > r.optim.grad_clip) ? r.optim.grad_clip / norm : 1.0;
      optim_->step(lr, scale);
      state_.lr = lr;
    }
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
    result.steps.push_back(sm);
    if (skip || (step + 1) % r.logging.every == 0 || step + 1 == end || step == first) {
      log.log(sm);
      window_tokens = window_time = 0;
    }
    if (!r.checkpoint.dir.empty() && r.checkpoint.every > 0 &&
        (step + 1) % r.checkpoint.every == 0 && step + 1 != end)
      save(result);
  }
  log.finish();
  result.wall_s = now_s() - t_start;
  if (!r.checkpoint.dir.empty() && (first < end || list_checkpoints(r.checkpoint.dir).empty())) {
    save(result);
    log.message(str("checkpoint: ", result.last_checkpoint));
  }
  if (r.train.sample_tokens > 0) {
    std::vector<int64_t> prompt{tokenizer_->eos_id()};
    for (int64_t id : tokenizer_->encode(r.train.sample_prompt)) prompt.push_back(id);
    GenerateOptions g;
    g.max_new_tokens = r.train.sample_tokens;
    g.stop_ids = {tokenizer_->eos_id()};
    std::vector<int64_t> out = model_->generate(prompt, g);
    result.sample = tokenizer_->decode(std::vector<int64_t>(out.begin() + 1, out.end()));
    log.message(str("sample (greedy): ", result.sample));
  }
  return result;
}

}  // namespace graft
