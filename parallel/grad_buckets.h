// Gradient buckets: the data-parallel reduction, and the ZeRO-1 shard each rank updates.
//
// The parameters (given in backward order: the order their gradients complete) are packed into
// buckets of about `bucket_mb` MiB. Each bucket owns two flat buffers: the f32 gradients and the
// parameter values (in the parameters' dtype); every Parameter's `grad` and `value` become views
// into them (values are copied in). Offsets inside a bucket are aligned to 64 elements and each
// bucket is padded to a multiple of 64 * group size, so every rank's shard is aligned too.
//
// Reduction. During the backward of the last micro-batch (set_sync(true)), mark_ready(p) is
// called as each parameter's gradient is complete (the model's per-layer backward hook); when a
// bucket's last parameter is ready, its collective starts at once (async, on the group's
// communication stream), so the reduction of bucket k overlaps the backward of the layers below
// it. finish() starts what has not started and waits for all of it; only then may the optimizer
// read the gradients. Before a bucket's reduction starts, the gradients of its parameters that are
// replicated over tp and see only part of their gradient on each rank (ShardSpec::grad_sum_over
// has kTP: sequence-parallel norms, q/k norms, replicated KV heads) are summed over options.tp.
// The reduction is the mean over the group (ReduceOp::kAvg):
//   zero = 0: all_reduce of the whole bucket; every rank holds the averaged gradients.
//   zero = 1: reduce_scatter; rank r holds the averaged gradients of its shard
//             [r * n / size, (r + 1) * n / size) of each bucket (n = padded bucket size). The rest
//             of its gradient buffer keeps this rank's local sums and must not be read.
// Zeroing (GradZeroing). zero_grad marks every gradient stale (lazy, the default) instead of
// filling the buckets with zeros: the step's first contribution to each gradient overwrites it
// (framework/core/parameter.h), and launch() zeroes the gradients still stale before anything
// reads them. kEager fills the buckets with zeros as before (and leaves nothing stale); kPoison
// (debug) fills them with NaN and marks them stale, so a write site that accumulates into a stale
// gradient turns the step's results into NaN. The environment variable GRAFT_GRAD_ZEROING
// (lazy | eager | poison) picks the mode where GradBucketOptions leaves it unset.
// Sharded optimizer. owned_pieces() lists what this rank's optimizer updates: whole parameters
// (zero = 0) or the intersections of the parameters with this rank's shards (zero = 1). After
// the optimizer wrote the new values of its pieces into the value buffers, gather_params()
// all-gathers each bucket's values so every rank holds the whole model again (zero = 1; a no-op
// otherwise).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "framework/core/parameter.h"
#include "parallel/process_group.h"

namespace graft {

// A contiguous range of one parameter's elements (row-major, of its local tensor).
struct ParamPiece {
  std::string name;
  Parameter* param = nullptr;
  int64_t offset = 0;  // first element within the parameter
  int64_t numel = 0;
  bool whole() const { return offset == 0 && numel == param->value.numel(); }
  Tensor value() const;  // [numel] view of param->value
  Tensor grad() const;   // [numel] view of param->grad
};

enum class GradZeroing { kLazy, kEager, kPoison };
// GRAFT_GRAD_ZEROING, or kLazy when unset; any other value is an InputError.
GradZeroing grad_zeroing_from_env();

struct GradBucketOptions {
  double bucket_mb = 25.0;
  bool zero = false;
  // The tensor-parallel group: parameters whose spec sums their gradient over kTP
  // (ShardSpec::grad_sum_over) are summed over it before the reduction (null: none).
  std::shared_ptr<ProcessGroup> tp = nullptr;
  std::optional<GradZeroing> zeroing;  // unset: grad_zeroing_from_env()
};

// Sums p.grad over the tp ranks that hold replicas of p (collective over `tp`): a parameter whole
// on every rank is all-reduced; a split one (a KV head replicated over some tp ranks) is placed at
// its offset in a zero buffer of the global extent along the split dimension, the buffer
// all-reduced and this rank's piece taken back, so only the ranks holding the same piece add up.
void sum_replica_grads(Parameter& p, ProcessGroup& tp);

class GradBuckets {
 public:
  // `params` in backward order; every value contiguous, all on one device. `group` reduces the
  // gradients (dp, or dp x cp).
  GradBuckets(std::vector<std::pair<std::string, Parameter*>> params,
              std::shared_ptr<ProcessGroup> group, GradBucketOptions options);
  ~GradBuckets();

  // Marks every gradient stale (kEager: one fill per bucket) and starts the step's readiness
  // counts afresh (also after a step that threw before finish()).
  void zero_grad();
  GradZeroing zeroing() const { return zeroing_; }
  // Whether the coming backward is the last micro-batch of a step (it launches reductions).
  void set_sync(bool sync) { sync_ = sync; }
  void mark_ready(const Parameter* p);
  void finish();  // start every bucket not yet started, wait for all

  const std::vector<ParamPiece>& owned_pieces() const { return owned_; }
  bool sharded() const { return options_.zero && group_->size() > 1; }
  void gather_params();

  const ProcessGroup& group() const { return *group_; }
  size_t num_buckets() const { return buckets_.size(); }
  // Parameter names of bucket i, in packing order (tests, logs).
  std::vector<std::string> bucket_names(size_t i) const;
  size_t bytes_per_rank() const;  // gradient + value buffers held by this rank

 private:
  struct Bucket;
  void launch(Bucket& b);

  std::shared_ptr<ProcessGroup> group_;
  GradBucketOptions options_;
  GradZeroing zeroing_ = GradZeroing::kLazy;
  bool sync_ = true;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::unordered_map<const Parameter*, size_t> bucket_of_;
  std::vector<ParamPiece> owned_;
};

}  // namespace graft
