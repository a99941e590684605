#include "framework/core/parameter.h"

namespace graft {

const char* layout_group_name(LayoutGroup g) {
  switch (g) {
    case LayoutGroup::kNone:
      return "none";
    case LayoutGroup::kTP:
      return "tp";
    case LayoutGroup::kCP:
      return "cp";
    case LayoutGroup::kDP:
      return "dp";
  }
  return "?";
}

ShardSpec ShardSpec::replicated(const Shape& shape) {
  ShardSpec s;
  s.global_shape = shape;
  s.dims.assign(shape.size(), DimShard{});
  return s;
}

ShardSpec ShardSpec::split(const Shape& global, int dim, LayoutGroup group, int64_t offset) {
  ShardSpec s = replicated(global);
  GRAFT_CHECK(dim >= 0 && dim < static_cast<int>(global.size()), "split dim ", dim, " of ",
              shape_str(global));
  s.dims[static_cast<size_t>(dim)] = DimShard{group, offset};
  return s;
}

bool ShardSpec::is_split() const {
  for (const auto& d : dims)
    if (d.group != LayoutGroup::kNone) return true;
  return false;
}

bool ShardSpec::split_over(LayoutGroup g) const {
  for (const auto& d : dims)
    if (d.group == g) return true;
  return false;
}

bool ShardSpec::sums_over(LayoutGroup g) const {
  for (LayoutGroup x : grad_sum_over)
    if (x == g) return true;
  return false;
}

bool ShardSpec::is_primary(int tp_rank) const {
  return split_over(LayoutGroup::kTP) ? replica == 0 : tp_rank == 0;
}

void ShardSpec::check(const Shape& local_shape, const std::string& what) const {
  GRAFT_CHECK(view.empty() || shape_numel(view) == shape_numel(local_shape), what, ": shard view ",
              shape_str(view), " does not hold the local shape ", shape_str(local_shape));
  const Shape local = box_shape(local_shape);
  GRAFT_CHECK(local.size() == global_shape.size() && dims.size() == local.size(), what,
              ": shard spec ", str(), " does not fit the local shape ", shape_str(local));
  for (size_t d = 0; d < local.size(); ++d) {
    const DimShard& s = dims[d];
    if (s.group == LayoutGroup::kNone) {
      GRAFT_CHECK(local[d] == global_shape[d], what, ": dimension ", d, " is whole in ", str(),
                  " but the local shape is ", shape_str(local));
    } else {
      GRAFT_CHECK(s.offset >= 0 && s.offset + local[d] <= global_shape[d], what, ": dimension ", d,
                  " piece [", s.offset, ", ", s.offset + local[d], ") outside ", str());
    }
  }
}

std::string ShardSpec::str() const {
  std::string out = shape_str(global_shape);
  bool any = false;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d].group == LayoutGroup::kNone) continue;
    out += graft::str(" split dim ", d, " over ", layout_group_name(dims[d].group), " at ",
                      dims[d].offset);
    any = true;
  }
  if (!any) out += " replicated";
  if (replica > 0) out += graft::str(" (replica ", replica, ")");
  if (!logical_shape.empty() && logical_shape != global_shape)
    out += graft::str(" (padded; logical ", shape_str(logical_shape), ")");
  for (LayoutGroup g : grad_sum_over)
    out += graft::str(" (grad summed over ", layout_group_name(g), ")");
  if (!part_of.empty()) out += graft::str(" (part of ", part_of, ")");
  return out;
}

std::string logical_param_name(const std::string& name, const ShardSpec& spec) {
  if (spec.part_of.empty()) return name;
  const size_t dot = name.rfind('.');
  return (dot == std::string::npos ? "" : name.substr(0, dot + 1)) + spec.part_of;
}

float grad_beta(Parameter& p) {
  if (!p.grad.defined()) {
    p.grad = Tensor::empty(p.value.shape(), DType::kF32, p.value.device());
    p.grad_stale = false;
    return 0.0f;
  }
  const bool stale = p.grad_stale;
  p.grad_stale = false;
  return stale ? 0.0f : 1.0f;
}

Tensor& grad_to_accumulate(Parameter& p) {
  if (!p.grad.defined()) {
    p.grad = Tensor::zeros(p.value.shape(), DType::kF32, p.value.device());
  } else if (p.grad_stale) {
    p.grad.zero_();
  }
  p.grad_stale = false;
  return p.grad;
}

void settle_grad(Parameter& p) {
  if (p.grad_stale) grad_to_accumulate(p);
}

}  // namespace graft
