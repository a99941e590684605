#include "parallel/grad_buckets.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

#include "framework/core/env.h"
#include "kernels/elementwise.h"

namespace graft {

namespace {
constexpr int64_t kAlign = 64;  // elements
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
}  // namespace

void sum_replica_grads(Parameter& p, ProcessGroup& tp) {
  if (tp.size() == 1 || !p.grad.defined()) return;
  Tensor g = p.grad.is_contiguous() ? p.grad : p.grad.contiguous();
  const ShardSpec& s = p.spec;
  const Shape box = s.box_shape(g.shape());
  int d = -1;
  for (size_t i = 0; i < s.dims.size(); ++i)
    if (s.dims[i].group == LayoutGroup::kTP) d = static_cast<int>(i);
  if (d < 0 || s.global_shape.size() != box.size()) {
    tp.all_reduce(g, ReduceOp::kSum)->wait();
  } else {
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < d; ++i) outer *= box[static_cast<size_t>(i)];
    for (size_t i = static_cast<size_t>(d) + 1; i < box.size(); ++i) inner *= box[i];
    const int64_t local = box[static_cast<size_t>(d)] * inner;
    const int64_t global = s.global_shape[static_cast<size_t>(d)] * inner;
    const int64_t at = s.dims[static_cast<size_t>(d)].offset * inner;
    Tensor buf = Tensor::zeros({outer * global}, DType::kF32, g.device());
    auto copy = [&](const Tensor& src, int64_t src_off, int64_t ld_src, Tensor& dst,
                    int64_t dst_off, int64_t ld_dst) {
      Copy2dParams c;
      c.src = static_cast<const float*>(src.raw()) + src_off;
      c.dst = static_cast<float*>(dst.raw()) + dst_off;
      c.rows = outer;
      c.cols = local;
      c.ld_src = ld_src;
      c.ld_dst = ld_dst;
      c.dtype = DType::kF32;
      c.device = g.device();
      if (outer > 0 && local > 0) copy_2d(c);
    };
    copy(g, 0, local, buf, at, global);
    tp.all_reduce(buf, ReduceOp::kSum)->wait();
    copy(buf, at, global, g, 0, local);
  }
  if (g.raw() != p.grad.raw()) p.grad.copy_from(g);
}

GradZeroing grad_zeroing_from_env() {
  static constexpr GradZeroing kModes[] = {GradZeroing::kLazy, GradZeroing::kEager,
                                           GradZeroing::kPoison};
  return kModes[env_choice("GRAFT_GRAD_ZEROING", {"lazy", "eager", "poison"})];
}

Tensor ParamPiece::value() const { return param->value.view({-1}).slice(0, offset, numel); }
Tensor ParamPiece::grad() const { return param->grad.view({-1}).slice(0, offset, numel); }

struct GradBuckets::Bucket {
  struct Entry {
    std::string name;
    Parameter* param;
    int64_t offset;  // in the bucket
  };
  std::vector<Entry> entries;
  int64_t numel = 0;  // padded
  Tensor grads;       // f32 [numel]
  Tensor values;      // param dtype [numel]
  size_t ready = 0;
  bool launched = false;
  std::unique_ptr<Work> work;
  Tensor shard;  // zero: the reduce-scatter output until finish() copies it home
};

GradBuckets::GradBuckets(std::vector<std::pair<std::string, Parameter*>> params,
                         std::shared_ptr<ProcessGroup> group, GradBucketOptions options)
    : group_(std::move(group)), options_(options) {
  GRAFT_CHECK(group_ != nullptr, "gradient buckets need a process group");
  zeroing_ = options_.zeroing ? *options_.zeroing : grad_zeroing_from_env();
  const int64_t cap = std::max<int64_t>(
      kAlign, static_cast<int64_t>(options_.bucket_mb * 1024.0 * 1024.0 / sizeof(float)));
  const int64_t world = group_->size();
  // Pack.
  std::vector<std::unique_ptr<Bucket>> packed;
  Device device = params.empty() ? Device::cpu() : params.front().second->value.device();
  DType dtype = params.empty() ? DType::kF32 : params.front().second->value.dtype();
  for (auto& [name, p] : params) {
    GRAFT_CHECK(p->value.defined() && p->value.is_contiguous(), "parameter ", name,
                " must be defined and contiguous to join a gradient bucket");
    GRAFT_CHECK(p->value.device() == device, "parameter ", name, " is on ", p->value.device().str(),
                ", the others on ", device.str());
    GRAFT_CHECK(!bucket_of_.count(p), "parameter ", name, " given twice");
    const int64_t n = p->value.numel();
    if (packed.empty() || p->value.dtype() != dtype ||
        (packed.back()->numel > 0 && packed.back()->numel + n > cap)) {
      packed.push_back(std::make_unique<Bucket>());
      dtype = p->value.dtype();
    }
    Bucket& b = *packed.back();
    b.entries.push_back({name, p, b.numel});
    b.numel = round_up(b.numel + n, kAlign);
    bucket_of_[p] = packed.size() - 1;
  }
  // Allocate, re-home the values and gradients, and work out this rank's pieces.
  for (auto& bp : packed) {
    Bucket& b = *bp;
    b.numel = round_up(b.numel, kAlign * world);
    const DType vt = b.entries.front().param->value.dtype();
    b.grads = Tensor::zeros({b.numel}, DType::kF32, device);
    b.values = Tensor::zeros({b.numel}, vt, device);
    const int64_t shard = b.numel / world, lo = shard * group_->rank(), hi = lo + shard;
    for (auto& e : b.entries) {
      Parameter& p = *e.param;
      const int64_t n = p.value.numel();
      Tensor v = b.values.slice(0, e.offset, n).view(p.value.shape());
      v.copy_from(p.value);
      Tensor g = b.grads.slice(0, e.offset, n).view(p.value.shape());
      if (p.grad.defined()) g.copy_from(p.grad);
      p.value = v;
      p.grad = g;
      if (!sharded()) {
        owned_.push_back({e.name, &p, 0, n});
      } else {
        const int64_t a = std::max(lo, e.offset), z = std::min(hi, e.offset + n);
        if (a < z) owned_.push_back({e.name, &p, a - e.offset, z - a});
      }
    }
  }
  buckets_ = std::move(packed);
}

GradBuckets::~GradBuckets() = default;

void GradBuckets::zero_grad() {
  for (auto& b : buckets_) {
    // A step that threw after some reports (e.g. a CUDA-graph capture that failed mid-backward,
    // whose step is then run again eagerly) left its readiness counts behind: a new step counts
    // afresh, as after finish().
    if (b->work) b->work->wait();
    b->work.reset();
    b->shard = Tensor();
    b->ready = 0;
    b->launched = false;
    if (zeroing_ == GradZeroing::kEager) {
      b->grads.zero_();
    } else if (zeroing_ == GradZeroing::kPoison) {
      FillParams f;
      f.x = b->grads.raw();
      f.value = std::numeric_limits<float>::quiet_NaN();
      f.n = b->grads.numel();
      f.device = b->grads.device();
      if (f.n > 0) fill(f);
    }
    for (auto& e : b->entries) e.param->grad_stale = zeroing_ != GradZeroing::kEager;
  }
}

void GradBuckets::mark_ready(const Parameter* p) {
  if (!sync_) return;
  auto it = bucket_of_.find(p);
  GRAFT_CHECK(it != bucket_of_.end(), "mark_ready: a parameter that is in no gradient bucket");
  Bucket& b = *buckets_[it->second];
  GRAFT_CHECK(!b.launched, "mark_ready: parameter ", b.entries.front().name,
              "'s bucket was already reduced in this step (a gradient reported twice?)");
  if (++b.ready == b.entries.size()) launch(b);
}

void GradBuckets::launch(Bucket& b) {
  b.launched = true;
  for (auto& e : b.entries) settle_grad(*e.param);  // no gradient this step: zero
  if (options_.tp && options_.tp->size() > 1)
    for (auto& e : b.entries)
      if (e.param->spec.sums_over(LayoutGroup::kTP)) sum_replica_grads(*e.param, *options_.tp);
  if (group_->size() == 1) return;
  if (sharded()) {
    b.shard = Tensor::empty({b.numel / group_->size()}, DType::kF32, b.grads.device());
    b.work = group_->reduce_scatter(b.grads, b.shard, ReduceOp::kAvg, /*async=*/true);
  } else {
    b.work = group_->all_reduce(b.grads, ReduceOp::kAvg, /*async=*/true);
  }
}

void GradBuckets::finish() {
  for (auto& b : buckets_)
    if (!b->launched) launch(*b);
  for (auto& b : buckets_) {
    if (b->work) b->work->wait();
    if (b->shard.defined()) {
      const int64_t n = b->shard.numel();
      Tensor home = b->grads.slice(0, n * group_->rank(), n);
      home.copy_from(b->shard);
      b->shard = Tensor();
    }
    b->work.reset();
    b->ready = 0;
    b->launched = false;
  }
}

void GradBuckets::gather_params() {
  if (!sharded()) return;
  for (auto& b : buckets_) {
    const int64_t n = b->numel / group_->size();
    Tensor mine = b->values.slice(0, n * group_->rank(), n).clone();
    group_->all_gather(mine, b->values)->wait();
  }
}

std::vector<std::string> GradBuckets::bucket_names(size_t i) const {
  std::vector<std::string> out;
  for (const auto& e : buckets_.at(i)->entries) out.push_back(e.name);
  return out;
}

size_t GradBuckets::bytes_per_rank() const {
  size_t n = 0;
  for (const auto& b : buckets_) n += b->grads.nbytes() + b->values.nbytes();
  return n;
}

}  // namespace graft
