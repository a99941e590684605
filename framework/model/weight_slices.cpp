#include "framework/model/weight_slices.h"

#include <algorithm>
#include <map>

#include "framework/core/error.h"

namespace graft {
namespace {

// The block of HF piece `p` along its own dimension [hf, hf + len) <-> global [at, at + len),
// with every other dimension whole (as `global` gives it).
LocalPiece whole_block(const HfPiece& p, size_t index, const Shape& global, int64_t hf,
                       int64_t at_local, int64_t len) {
  LocalPiece lp;
  lp.hf_name = p.hf_name;
  lp.piece = index;
  lp.hf_offset.assign(global.size(), 0);
  lp.local_offset.assign(global.size(), 0);
  lp.box = global;
  lp.hf_offset[p.dim] = hf;
  lp.local_offset[p.dim] = at_local;
  lp.box[p.dim] = len;
  return lp;
}

// Rows of one HF tensor this rank holds, in the tensor's own row numbers.
struct Share {
  int64_t begin = 0, length = 0;
};

}  // namespace

Tensor box_view(const Tensor& t, const Shape& offset, const Shape& box) {
  GRAFT_CHECK(static_cast<int>(box.size()) == t.ndim() && offset.size() == box.size(),
              "box_view: box ", shape_str(box), " for ", t.str());
  Tensor v = t;
  for (size_t d = 0; d < box.size(); ++d)
    if (offset[d] != 0 || box[d] != t.size(static_cast<int>(d)))
      v = v.slice(static_cast<int>(d), offset[d], box[d]);
  return v;
}

void copy_box(Tensor& to, const Tensor& from) {
  GRAFT_CHECK(to.shape() == from.shape(), "copy_box: ", from.str(), " into ", to.str());
  if (to.ndim() == 2 && to.device().is_cpu() && from.device().is_cpu() && to.strides()[1] == 1 &&
      from.strides()[1] == 1) {
    const size_t ts = dtype_size(to.dtype()), fs = dtype_size(from.dtype());
    auto* d = static_cast<uint8_t*>(to.raw());
    const auto* s = static_cast<const uint8_t*>(from.raw());
    for (int64_t r = 0; r < to.size(0); ++r)
      convert_elements(s + r * from.strides()[0] * fs, from.dtype(), d + r * to.strides()[0] * ts,
                       to.dtype(), static_cast<size_t>(to.size(1)));
    return;
  }
  to.copy_from(from);
}

std::vector<LocalPiece> local_pieces(const HfParamEntry& e) {
  return local_pieces(e, e.parameter->spec, e.parameter->value.shape());
}

std::vector<LocalPiece> local_pieces(const HfParamEntry& e, const ShardSpec& spec,
                                     const Shape& local) {
  const Shape& global = e.shape;
  const bool described = spec.dims.size() == local.size() && spec.global_shape == global;
  int split = -1;
  if (described) {
    for (size_t d = 0; d < spec.dims.size(); ++d) {
      if (spec.dims[d].group == LayoutGroup::kNone) continue;
      GRAFT_CHECK(split < 0, e.param, ": ", spec.str(),
                  " is split along two dimensions; HF loading and export split one");
      split = static_cast<int>(d);
    }
  }
  std::vector<LocalPiece> out;
  if (split < 0) {
    GRAFT_CHECK(local == global, e.param, ": local shape ", shape_str(local), " is not the global ",
                shape_str(global), " of an unsplit parameter");
    for (size_t j = 0; j < e.pieces.size(); ++j) {
      const HfPiece& p = e.pieces[j];
      out.push_back(whole_block(p, j, global, p.hf_start, p.start, p.length));
    }
    return out;
  }
  const int s = split;
  const int64_t o = spec.dims[s].offset, L = local[s], G = global[s];
  for (size_t d = 0; d < local.size(); ++d)
    GRAFT_CHECK(static_cast<int>(d) == s || local[d] == global[d], e.param, ": local shape ",
                shape_str(local), " differs from ", spec.str(), " outside the split dimension");
  size_t along = 0;
  for (const HfPiece& p : e.pieces) along += p.dim == s;
  GRAFT_CHECK(along == 0 || along == e.pieces.size(), e.param,
              ": weight map pieces run along several dimensions of a parameter split along ", s);

  if (along == 0) {  // row-parallel: every piece gets the columns [o, o + L)
    for (size_t j = 0; j < e.pieces.size(); ++j) {
      const HfPiece& p = e.pieces[j];
      LocalPiece lp = whole_block(p, j, local, p.hf_start, p.start, p.length);
      lp.hf_offset[s] = o;
      out.push_back(lp);
    }
    return out;
  }

  // Pieces stacked along the split dimension: the HF tensors in first-named order.
  std::vector<std::string> tensors;
  std::map<std::string, std::pair<int64_t, int64_t>> rows;  // name -> (first HF row, row count)
  for (const HfPiece& p : e.pieces) {
    auto [it, fresh] = rows.emplace(p.hf_name, std::pair{p.hf_start, 0});
    if (fresh) tensors.push_back(p.hf_name);
    it->second.first = std::min(it->second.first, p.hf_start);
    it->second.second += p.length;
  }
  if (tensors.size() == 1 && spec.segments.empty()) {  // the window [o, o + L); the rest padding
    for (size_t j = 0; j < e.pieces.size(); ++j) {
      const HfPiece& p = e.pieces[j];
      const int64_t a = std::max(p.start, o), b = std::min(p.start + p.length, o + L);
      if (a < b) out.push_back(whole_block(p, j, local, p.hf_start + (a - p.start), a - o, b - a));
    }
    return out;
  }
  std::map<std::string, Share> share;
  GRAFT_CHECK(spec.segments.empty() || spec.segments.size() == tensors.size(), e.param, ": ",
              spec.str(), " lists ", spec.segments.size(), " segments for ", tensors.size(),
              " stacked HF tensors");
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto [first, R] = rows.at(tensors[k]);
    if (!spec.segments.empty()) {
      share[tensors[k]] = {first + spec.segments[k].offset, spec.segments[k].length};
      continue;
    }
    GRAFT_CHECK((o * R) % G == 0 && (L * R) % G == 0, e.param, ": ", spec.str(), " with local ", L,
                " does not split ", tensors[k], " (", R, " of ", G,
                " rows) by the same fraction; the layer must list segments");
    share[tensors[k]] = {first + o * R / G, L * R / G};
  }
  // Each piece's part inside its tensor's share, stacked in global order.
  struct Part {
    int64_t global_at, hf_at, len;
    size_t piece;
  };
  std::vector<Part> parts;
  for (size_t j = 0; j < e.pieces.size(); ++j) {
    const HfPiece& p = e.pieces[j];
    const Share& sh = share.at(p.hf_name);
    const int64_t a = std::max(p.hf_start, sh.begin);
    const int64_t b = std::min(p.hf_start + p.length, sh.begin + sh.length);
    if (a < b) parts.push_back({p.start + (a - p.hf_start), a, b - a, j});
  }
  std::sort(parts.begin(), parts.end(),
            [](const Part& x, const Part& y) { return x.global_at < y.global_at; });
  int64_t at = 0;
  for (const Part& q : parts) {
    out.push_back(whole_block(e.pieces[q.piece], q.piece, local, q.hf_at, at, q.len));
    at += q.len;
  }
  GRAFT_CHECK(at == L, e.param, ": the shares of its stacked HF tensors hold ", at,
              " rows but the local tensor has ", L, " (", spec.str(), ")");
  return out;
}

}  // namespace graft
