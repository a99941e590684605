#include "layers/reference/rope_table.h"

#include <map>
#include <mutex>
#include <vector>

#include "kernels/rope.h"

namespace graft::layers {

std::shared_ptr<const RopeTable> rope_table(const RopeConfig& rope, int64_t head_dim,
                                            int64_t min_positions, Device device) {
  auto scaling = rope_scaling_from_name(rope.type);
  GRAFT_INPUT_CHECK(scaling.has_value(), "rope.type = '", rope.type,
                    "' is not supported (expected default, linear or llama3)");
  const int64_t rotary_dim = rope.rotary_dim > 0 ? rope.rotary_dim : head_dim;
  GRAFT_INPUT_CHECK(rotary_dim % 2 == 0 && rotary_dim <= head_dim, "rope.rotary_dim = ", rotary_dim,
                    " must be even and <= head_dim = ", head_dim);
  GRAFT_INPUT_CHECK(rope.theta > 0, "rope.theta = ", rope.theta, ", expected > 0");
  GRAFT_INPUT_CHECK(rope.factor > 0, "rope.factor = ", rope.factor, ", expected > 0");
  const std::string key =
      str(rope.type, '|', rope.theta, '|', rope.factor, '|', rope.low_freq_factor, '|',
          rope.high_freq_factor, '|', rope.original_max_position_embeddings, '|', rotary_dim, '|',
          device.str());
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const RopeTable>> tables;
  std::lock_guard<std::mutex> lock(m);
  auto& slot = tables[key];
  if (slot && slot->max_positions >= min_positions) return slot;
  int64_t n = 2048;
  while (n < min_positions) n *= 2;
  RopeFreqParams fp;
  fp.rotary_dim = rotary_dim;
  fp.theta = rope.theta;
  fp.scaling = *scaling;
  fp.factor = rope.factor;
  fp.low_freq_factor = rope.low_freq_factor;
  fp.high_freq_factor = rope.high_freq_factor;
  fp.original_max_position_embeddings = rope.original_max_position_embeddings;
  Tensor cos = Tensor::empty({n, rotary_dim / 2}, DType::kF32);
  Tensor sin = Tensor::empty({n, rotary_dim / 2}, DType::kF32);
  rope_cos_sin_table(fp, n, cos.data<float>(), sin.data<float>());
  auto t = std::make_shared<RopeTable>();
  t->cos = device.is_cpu() ? cos : cos.to(device);
  t->sin = device.is_cpu() ? sin : sin.to(device);
  t->max_positions = n;
  t->rotary_dim = rotary_dim;
  slot = t;
  return t;
}

void rope_apply(Tensor& x, const Tensor& positions, const RopeTable& table, bool backward) {
  GRAFT_CHECK(x.ndim() == 4 && x.strides()[3] == 1, "rope_apply: x ", x.str());
  GRAFT_CHECK(positions.defined() && positions.dtype() == DType::kI64 && positions.ndim() == 2 &&
                  positions.size(0) == x.size(0) && positions.size(1) == x.size(1) &&
                  positions.strides()[1] == 1,
              "rope_apply: positions must be i64 [", x.size(0), ", ", x.size(1), "], got ",
              positions.defined() ? positions.str() : "none");
  RopeParams p;
  p.x = x.raw();
  p.cos = static_cast<const float*>(table.cos.raw());
  p.sin = static_cast<const float*>(table.sin.raw());
  p.positions = static_cast<const int64_t*>(positions.raw());
  p.batch = x.size(0);
  p.seq = x.size(1);
  p.heads = x.size(2);
  p.head_dim = x.size(3);
  p.rotary_dim = table.rotary_dim;
  p.max_positions = table.max_positions;
  p.stride_b = x.strides()[0];
  p.stride_s = x.strides()[1];
  p.stride_h = x.strides()[2];
  p.pos_stride_b = positions.strides()[0];
  p.dtype = x.dtype();
  p.device = x.device();
  if (x.numel() == 0) return;
  if (backward)
    rope_bwd(p);
  else
    rope_fwd(p);
}

int64_t rope_positions_needed(const AttentionInputs& in) {
  int64_t n = in.cache_offset + in.seq;
  if (in.cache) n = std::max(n, in.cache->max_len);
  return n;
}

}  // namespace graft::layers
