#include "framework/model/shard_init.h"

#include <map>

#include "framework/registry/registry.h"

namespace graft {

Tensor whole_box(const Tensor& whole, const ShardSpec& whole_spec, const ShardSpec& spec,
                 const Shape& local, const std::string& what) {
  Tensor w = whole.to(Device::cpu());
  if (w.dtype() != DType::kF32) w = w.to(DType::kF32);
  w = w.contiguous();
  Tensor g = w.view(whole_spec.box_shape(w.shape()));
  const Shape box = spec.box_shape(local);
  const Shape logical = spec.logical_shape.empty() ? spec.global_shape : spec.logical_shape;
  GRAFT_CHECK(g.shape() == logical && spec.dims.size() == box.size(), what, ": the whole tensor ",
              shape_str(g.shape()), " is not the logical tensor of ", spec.str());
  Tensor out = Tensor::zeros(box, DType::kF32);
  Tensor src = g, dst = out;
  for (size_t d = 0; d < box.size(); ++d) {
    if (spec.dims[d].group == LayoutGroup::kNone) continue;
    const int64_t at = spec.dims[d].offset;
    const int64_t n = std::max<int64_t>(0, std::min(box[d], logical[d] - at));
    if (n == 0) return out.view(local);
    src = src.slice(static_cast<int>(d), at, n);
    dst = dst.slice(static_cast<int>(d), 0, n);
  }
  dst.copy_from(src);
  return out.view(local);
}

std::unique_ptr<CausalLM> build_whole_model(const CausalLM& m) {
  ModelConfig c = m.config();
  c.decoder.device = Device::cpu();
  c.decoder.params_dtype = DType::kF32;
  c.decoder.sequence_parallel = false;
  std::vector<std::pair<std::string, std::string>> overrides;
  const auto types = m.decoder_layer_types();
  if (!types.empty() && types.front() != c.decoder_layer)
    overrides.emplace_back(c.decoder_layer, types.front());
  OverrideScope scope(overrides);
  return build_model(c, BuildContext{Device::cpu(), DType::kF32, single_process_groups(), nullptr});
}

void copy_shards(CausalLM& dst, CausalLM& whole) {
  std::map<std::string, Parameter*> src;
  for (auto& [name, p] : whole.named_parameters()) src[name] = p;
  for (auto& [name, p] : dst.named_parameters()) {
    auto it = src.find(logical_param_name(name, p->spec));  // a part: a box of its tensor
    GRAFT_CHECK(it != src.end(), "copy_shards: the single-process model has no parameter ", name);
    Tensor box = whole_box(it->second->value, it->second->spec, p->spec, p->value.shape(), name);
    Tensor v = box.to(p->value.dtype());
    p->value.copy_from(p->value.device().is_cpu() ? v : v.to(p->value.device()));
  }
}

}  // namespace graft
