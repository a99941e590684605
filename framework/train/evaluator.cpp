#include "framework/train/evaluator.h"

#include <cmath>

#include "framework/data/prepare.h"
#include "framework/data/validation.h"

namespace graft {

Evaluator::Evaluator(std::shared_ptr<const TokenDataset> data, const std::vector<int64_t>& windows,
                     int64_t seq_len, const EvalConfig& config, int64_t batch_size, int rank,
                     int world, const std::string& file, std::string source)
    : data_(std::move(data)),
      seq_len_(seq_len),
      batch_size_(batch_size),
      total_windows_(static_cast<int64_t>(windows.size())),
      config_(config),
      rank_(rank),
      world_(world),
      source_(std::move(source)) {
  GRAFT_INPUT_CHECK(total_windows_ > 0, file, ": no validation windows ", source_,
                    " (each is data.seq_len = ", seq_len, " tokens)");
  const int64_t used = config.batches * batch_size * world;
  // Spread over the windows; cyclic when there are fewer windows than sequences (said in
  // describe()).
  for (int64_t j = 0; j < used; ++j)
    starts_.push_back(used <= total_windows_ ? windows[j * total_windows_ / used]
                                             : windows[j % total_windows_]);
}

Tensor Evaluator::batch(int64_t b) const {
  GRAFT_CHECK(b >= 0 && b < config_.batches, "validation batch ", b, " of ", config_.batches);
  Tensor t = Tensor::empty({batch_size_, seq_len_}, DType::kI64);
  int64_t* p = t.data<int64_t>();
  const int64_t base = (b * world_ + rank_) * batch_size_;
  for (int64_t i = 0; i < batch_size_; ++i)
    data_->read(starts_[base + i], seq_len_, p + i * seq_len_);
  return t;
}

double Evaluator::evaluate(CausalLM& model, ProcessGroup& group) const {
  double sum = 0;
  for (int64_t b = 0; b < config_.batches; ++b) {
    Tensor ids = batch(b);
    sum += model.forward_backward(ids, ids, Tensor(), /*backward=*/false);
  }
  return group.all_reduce_scalar(sum / static_cast<double>(config_.batches), ReduceOp::kAvg);
}

bool Evaluator::due(int64_t step, int64_t end) const {
  return step == end || (config_.every > 0 && step % config_.every == 0);
}

std::string Evaluator::describe() const {
  const int64_t used = static_cast<int64_t>(starts_.size());
  return str("eval: ", config_.batches, " batches of ", batch_size_ * world_, " x ", seq_len_,
             " tokens from ", total_windows_, " windows ", source_,
             used > total_windows_
                 ? str(" (", used,
                       " sequences: windows reused cyclically; lower eval.batches to "
                       "avoid it)")
                 : std::string(),
             config_.every > 0 ? str(", every ", config_.every, " steps and at the end")
                               : std::string(", at the end"));
}

std::unique_ptr<Evaluator> make_evaluator(const Recipe& r, const TokenDataset& train,
                                          ProcessGroup& world, int dp_rank, int dp_world) {
  const ValidationConfig& v = r.data.validation;
  if (!v.enabled()) return nullptr;
  const int64_t S = r.data.seq_len;
  auto make = [&](std::shared_ptr<const TokenDataset> d, const std::vector<int64_t>& windows,
                  const std::string& source) {
    return std::make_unique<Evaluator>(std::move(d), windows, S, r.eval, r.train.batch_size,
                                       dp_rank, dp_world, r.file, source);
  };
  if (v.fraction > 0) {
    // Not owned: the trainer's training dataset.
    std::shared_ptr<const TokenDataset> d(std::shared_ptr<void>(), &train);
    return make(d, held_out_windows(train.size(), S, v.fraction),
                str("held out by data.validation.fraction = ", v.fraction));
  }
  std::string dir = v.path;
  if (!v.prepared()) {
    DataConfig c = r.data;
    c.text = {v.path};
    c.files = v.files;
    c.sources.clear();  // the validation files alone (ensure_dataset makes one source of them)
    c.prepared.clear();
    c.tokenizer = train.tokenizer();
    const bool several = world.size() > 1;
    if (several && world.rank() != 0) world.barrier();
    dir = ensure_dataset(c);
    if (several && world.rank() == 0) world.barrier();
  }
  auto d = std::make_shared<const TokenDataset>(TokenDataset::open(dir));
  GRAFT_INPUT_CHECK((d->tokenizer() == "byte") == (train.tokenizer() == "byte") &&
                        d->vocab_size() == train.vocab_size() && d->eos_id() == train.eos_id(),
                    r.file, ": data.validation.path = '", v.path, "' was tokenized with ",
                    d->tokenizer(), " (vocab ", d->vocab_size(), "), the training data with ",
                    train.tokenizer(), " (vocab ", train.vocab_size(), ")");
  std::vector<int64_t> windows;
  for (int64_t w = 0; w + S <= d->size(); w += S) windows.push_back(w);
  return make(d, windows, str("of data.validation.path = '", v.path, "'"));
}

}  // namespace graft
