#include "framework/model/hf_gather.h"

#include <algorithm>

#include "framework/model/weight_slices.h"

namespace graft {
namespace {

// What a member of a group tells the others of a split parameter: its replica index, then per
// dimension (up to kMaxRank) the offset, the local size and the view's size.
constexpr int64_t kMaxRank = 4;
constexpr int64_t kSpecWords = 1 + 3 * kMaxRank;

bool boxes_overlap(const LocalPiece& a, const LocalPiece& b) {
  for (size_t d = 0; d < a.box.size(); ++d)
    if (a.hf_offset[d] + a.box[d] <= b.hf_offset[d] || b.hf_offset[d] + b.box[d] <= a.hf_offset[d])
      return false;
  return true;
}

}  // namespace

HfGather::HfGather(CausalLM& model, HfExportSource source, DType dtype,
                   std::shared_ptr<const ParallelGroups> groups)
    : table_(build_weight_table(model)),
      source_(source),
      dtype_(dtype),
      groups_(groups ? std::move(groups) : model.context().groups) {
  GRAFT_INPUT_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16,
                    "export: dtype ", dtype_name(dtype), " is not supported (f32, bf16, f16)");
  root_ = groups_->world->rank() == 0;
  for (size_t i = 0; i < table_.params.size(); ++i)
    for (const HfPiece& p : table_.params[i].pieces) {
      auto& v = uses_[p.hf_name];
      if (v.empty() || v.back() != i) v.push_back(i);
    }
  // Exchange the split specs, one all_gather per group (every member splits the same entries).
  peer_specs_.resize(table_.params.size());
  peer_shapes_.resize(table_.params.size());
  for (ProcessGroup* g : {groups_->tp.get(), groups_->cp.get(), groups_->dp.get()}) {
    std::vector<size_t> split;
    for (size_t i = 0; i < table_.params.size(); ++i)
      if (group_of(table_.params[i]) == g) split.push_back(i);
    if (split.empty()) continue;
    const int64_t n = static_cast<int64_t>(split.size());
    Tensor mine = Tensor::zeros({n * kSpecWords}, DType::kI64);
    int64_t* w = mine.data<int64_t>();
    for (int64_t k = 0; k < n; ++k) {
      const Parameter& p = *table_.params[split[k]].parameter;
      const Shape box = p.spec.box_shape(p.value.shape());
      GRAFT_CHECK(static_cast<int64_t>(box.size()) <= kMaxRank && p.value.ndim() <= kMaxRank,
                  table_.params[split[k]].param, ": export handles ranks up to ", kMaxRank);
      int64_t* e = w + k * kSpecWords;
      e[0] = p.spec.replica;
      for (size_t d = 0; d < box.size(); ++d) {
        e[1 + d] = p.spec.dims[d].offset;
        e[1 + 2 * kMaxRank + d] = box[d];
      }
      for (int d = 0; d < p.value.ndim(); ++d) e[1 + kMaxRank + d] = p.value.size(d);
    }
    Tensor all = Tensor::empty({g->size() * n * kSpecWords}, DType::kI64);
    g->all_gather(mine, all);
    const int64_t* a = all.data<int64_t>();
    for (int64_t k = 0; k < n; ++k) {
      const HfParamEntry& en = table_.params[split[k]];
      for (int r = 0; r < g->size(); ++r) {
        const int64_t* e = a + (r * n + k) * kSpecWords;
        ShardSpec spec = en.parameter->spec;
        spec.replica = e[0];
        for (size_t d = 0; d < spec.dims.size(); ++d) spec.dims[d].offset = e[1 + d];
        if (!spec.view.empty())
          for (size_t d = 0; d < spec.view.size(); ++d) spec.view[d] = e[1 + 2 * kMaxRank + d];
        Shape shape = en.parameter->value.shape();
        for (size_t d = 0; d < shape.size(); ++d) shape[d] = e[1 + kMaxRank + d];
        peer_specs_[split[k]].push_back(std::move(spec));
        peer_shapes_[split[k]].push_back(std::move(shape));
      }
    }
  }
}

ProcessGroup* HfGather::group_of(const HfParamEntry& e) const {
  const ShardSpec& spec = e.parameter->spec;
  if (!spec_describes(spec, e.parameter->value.shape())) return nullptr;
  LayoutGroup group = LayoutGroup::kNone;
  for (const DimShard& d : spec.dims)
    if (d.group != LayoutGroup::kNone) group = d.group;
  switch (group) {
    case LayoutGroup::kTP:
      return groups_->tp.get();
    case LayoutGroup::kCP:
      return groups_->cp.get();
    case LayoutGroup::kDP:
      return groups_->dp.get();
    default:
      return nullptr;
  }
}

Tensor HfGather::source_of(const HfParamEntry& e) const {
  const Tensor& v = source_ == HfExportSource::kWeights ? e.parameter->value : e.parameter->grad;
  GRAFT_CHECK(v.defined(), "export of ", e.param, ": gradient not allocated");
  return v.device().is_cpu() ? v : v.to(Device::cpu());
}

Tensor HfGather::gather(const std::string& name) {
  auto it = uses_.find(name);
  GRAFT_CHECK(it != uses_.end(), "export: no parameter holds ", name);
  const std::vector<size_t>& entries = it->second;
  ProcessGroup* g = nullptr;
  for (size_t i : entries) {
    ProcessGroup* gi = group_of(table_.params[i]);
    GRAFT_CHECK(!gi || !g || gi == g, "export: ", name, " is held by parameters split over ",
                g->name(), " and ", gi->name());
    if (gi) g = gi;
  }
  const bool mine = !g || g->world_ranks()[0] == 0;  // rank 0's group holds the tensor
  if (!mine || (!g && !root_)) return Tensor();
  uint64_t held = 0;

  // This rank's (r's) blocks of `name` among the split entries, in packing order. A replica (a
  // KV head held by several tp ranks) other than the first sends nothing: rank 0 has that block
  // from the first. The other parameters of a replica (te's query part of a fused qkv whose
  // key/value part is replicated) still send theirs.
  auto blocks_of = [&](int r) {
    std::vector<std::pair<size_t, LocalPiece>> out;
    for (size_t i : entries) {
      if (!group_of(table_.params[i]) || peer_specs_[i][r].replica > 0) continue;
      for (LocalPiece& lp : local_pieces(table_.params[i], peer_specs_[i][r], peer_shapes_[i][r]))
        if (lp.hf_name == name) out.emplace_back(i, std::move(lp));
    }
    return out;
  };
  const bool on_device = g && g->backend() == "nccl";
  const Device device =
      on_device ? table_.params[entries[0]].parameter->value.device() : Device::cpu();
  if (g && g->rank() != 0) {  // pack and send to rank 0 of the group
    const auto blocks = blocks_of(g->rank());
    int64_t total = 0;
    for (const auto& [i, lp] : blocks) total += lp.numel();
    if (total == 0) return Tensor();  // rank 0 skips this rank too (the same blocks_of)
    Tensor buf = Tensor::empty({total}, dtype_);
    int64_t at = 0;
    for (const auto& [i, lp] : blocks) {
      Tensor src = source_of(table_.params[i]);
      held = std::max<uint64_t>(held, src.nbytes());
      Tensor dst = buf.slice(0, at, lp.numel()).view(lp.box);
      copy_box(dst, box_view(src, lp.local_offset, lp.box));
      at += lp.numel();
    }
    Tensor send = on_device ? buf.to(device) : buf;
    g->send_recv({{P2POp::Kind::kSend, send, 0}});
    peak_bytes_ = std::max(peak_bytes_, held + 2 * buf.nbytes());
    return Tensor();
  }

  // Rank 0: the whole tensor from its own blocks (replicated entries too), then each peer's.
  Tensor out = Tensor::empty(table_.hf_shapes.at(name), dtype_);
  std::vector<LocalPiece> placed;
  auto place = [&](const LocalPiece& lp, const Tensor& from) {
    for (const LocalPiece& q : placed) {
      if (q.hf_offset == lp.hf_offset && q.box == lp.box) return;  // a replica (KV heads)
      GRAFT_CHECK(!boxes_overlap(q, lp), "export: blocks of ", name, " overlap at ",
                  shape_str(lp.hf_offset));
    }
    Tensor to = box_view(out, lp.hf_offset, lp.box);
    copy_box(to, from);
    placed.push_back(lp);
  };
  for (size_t i : entries) {
    const HfParamEntry& e = table_.params[i];
    Tensor src = source_of(e);
    held = std::max<uint64_t>(held, src.nbytes());
    for (const LocalPiece& lp : local_pieces(e))
      if (lp.hf_name == name) place(lp, box_view(src, lp.local_offset, lp.box));
  }
  for (int r = 1; g && r < g->size(); ++r) {
    const auto blocks = blocks_of(r);
    int64_t total = 0;
    for (const auto& [i, lp] : blocks) total += lp.numel();
    if (total == 0) continue;
    Tensor recv = Tensor::empty({total}, dtype_, device);
    g->send_recv({{P2POp::Kind::kRecv, recv, r}});
    Tensor buf = on_device ? recv.to(Device::cpu()) : recv;
    held = std::max<uint64_t>(held, 2 * buf.nbytes());
    int64_t at = 0;
    for (const auto& [i, lp] : blocks) {
      place(lp, buf.slice(0, at, lp.numel()).view(lp.box));
      at += lp.numel();
    }
  }
  int64_t covered = 0;
  for (const LocalPiece& q : placed) covered += q.numel();
  GRAFT_CHECK(covered == out.numel(), "export: ", name, " covered ", covered, " of ", out.numel(),
              " elements by the blocks of its parameters");
  peak_bytes_ = std::max(peak_bytes_, out.nbytes() + held);
  return out;
}

std::vector<std::pair<std::string, Tensor>> export_hf_tensors(
    CausalLM& model, HfExportSource source, DType dtype,
    std::shared_ptr<const ParallelGroups> groups) {
  HfGather gather(model, source, dtype, std::move(groups));
  std::vector<std::pair<std::string, Tensor>> out;
  for (const std::string& n : gather.table().hf_names) {
    Tensor t = gather.gather(n);
    if (gather.root()) out.emplace_back(n, std::move(t));
  }
  return out;
}

}  // namespace graft
