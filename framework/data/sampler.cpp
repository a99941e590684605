#include "framework/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace graft {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Sampler::Sampler(const TokenDataset* data, SamplerConfig config,
                 const std::vector<std::pair<int64_t, int64_t>>& exclude)
    : data_(data), config_(config) {
  GRAFT_CHECK(config.world >= 1 && config.rank >= 0 && config.rank < config.world, "rank ",
              config.rank, " of ", config.world);
  GRAFT_CHECK(config.seq_len > 0, "seq_len = ", config.seq_len);
  int64_t pos = 0;
  for (const auto& [begin, end] : exclude) {
    GRAFT_CHECK(begin >= pos && end >= begin && end <= data->size(), "exclude [", begin, ", ", end,
                ") after ", pos, " of ", data->size());
    if (begin > pos) runs_.push_back({total_, pos, begin - pos});
    total_ += begin - pos;
    pos = end;
  }
  if (data->size() > pos) runs_.push_back({total_, pos, data->size() - pos});
  total_ += data->size() - pos;
  GRAFT_INPUT_CHECK(total_ > config.seq_len, data->dir(), ": the dataset holds ", total_, " tokens",
                    exclude.empty() ? "" : " outside the validation split",
                    ", fewer than data.seq_len + 1 = ", config.seq_len + 1);
  windows_ = (total_ - 1) / config.seq_len;
}

void Sampler::read(int64_t begin, int64_t n, int64_t* out) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), begin,
                             [](int64_t v, const Run& r) { return v < r.at; });
  for (--it; n > 0; ++it) {
    const int64_t local = begin - it->at, take = std::min(n, it->len - local);
    data_->read(it->begin + local, take, out);
    out += take;
    begin += take;
    n -= take;
  }
}

void Sampler::read_mask(int64_t begin, int64_t n, uint8_t* out) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), begin,
                             [](int64_t v, const Run& r) { return v < r.at; });
  for (--it; n > 0; ++it) {
    const int64_t local = begin - it->at, take = std::min(n, it->len - local);
    data_->read_loss_mask(it->begin + local, take, out);
    out += take;
    begin += take;
    n -= take;
  }
}

void Sampler::prepare_epoch(uint64_t e) {
  if (e == epoch_) return;
  epoch_ = e;
  const uint64_t s = splitmix64(config_.seed ^ splitmix64(e));
  const int64_t slack = total_ - 1 - windows_ * config_.seq_len;
  offset_ = static_cast<int64_t>(s % static_cast<uint64_t>(slack + 1));
  perm_.resize(windows_);
  std::iota(perm_.begin(), perm_.end(), 0);
  // Fisher-Yates with an explicitly specified generator (std::shuffle's algorithm is not).
  std::mt19937_64 rng(splitmix64(s));
  for (int64_t i = windows_ - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(perm_[i], perm_[j]);
  }
}

int64_t Sampler::window_start(uint64_t g) {
  prepare_epoch(g / windows_);
  return offset_ + perm_[g % windows_] * config_.seq_len;
}

void Sampler::sequence(uint64_t g, int64_t* out) {
  read(window_start(g), config_.seq_len + 1, out);
}

void Sampler::fill_row(uint64_t g, int64_t* ids, int64_t* targets, int64_t* positions,
                       int64_t* segments, int64_t* counted) {
  const int64_t S = config_.seq_len, start = window_start(g), eos = data_->eos_id();
  tokens_.resize(static_cast<size_t>(S + 1));
  read(start, S + 1, tokens_.data());
  const bool masked = data_->has_loss_mask();
  if (masked) {
    mask_.resize(static_cast<size_t>(S + 1));
    read_mask(start, S + 1, mask_.data());
  }
  int64_t seg = 0, doc_start = 0;
  for (int64_t t = 0; t < S; ++t) {
    if (t > 0 && tokens_[t - 1] == eos) {  // a document starts here
      ++seg;
      doc_start = t;
    }
    ids[t] = tokens_[t];
    const bool count = tokens_[t] != eos && (!masked || mask_[t + 1] != 0);
    targets[t] = count ? tokens_[t + 1] : -100;
    *counted += count;
    if (positions) positions[t] = t - doc_start;
    if (segments) segments[t] = seg;
  }
}

LmInputs Sampler::next(int64_t batch) {
  const int64_t S = config_.seq_len;
  LmInputs out;
  out.input_ids = Tensor::empty({batch, S}, DType::kI64);
  out.targets = Tensor::empty({batch, S}, DType::kI64);
  if (config_.document_mask) {
    out.positions = Tensor::empty({batch, S}, DType::kI64);
    out.segment_ids = Tensor::empty({batch, S}, DType::kI64);
  }
  auto row = [&](Tensor& t, int64_t b) {
    return t.defined() ? t.data<int64_t>() + b * S : nullptr;
  };
  out.num_targets = 0;
  const uint64_t base = position_ + static_cast<uint64_t>(config_.rank * batch);
  for (int64_t b = 0; b < batch; ++b)
    fill_row(base + b, row(out.input_ids, b), row(out.targets, b), row(out.positions, b),
             row(out.segment_ids, b), &out.num_targets);
  position_ += static_cast<uint64_t>(batch * config_.world);
  return out;
}

}  // namespace graft
