#include "framework/model/weight_slices.h"

#include <algorithm>
#include <map>

#include "framework/core/error.h"

namespace graft {
namespace {

struct Box {
  Shape at, size;  // in the spec's (view) coordinates
};

// Intersection of a and b; false when empty.
bool intersect(const Box& a, const Box& b, Box* out) {
  out->at.resize(a.at.size());
  out->size.resize(a.at.size());
  for (size_t d = 0; d < a.at.size(); ++d) {
    const int64_t lo = std::max(a.at[d], b.at[d]);
    const int64_t hi = std::min(a.at[d] + a.size[d], b.at[d] + b.size[d]);
    if (hi <= lo) return false;
    out->at[d] = lo;
    out->size[d] = hi - lo;
  }
  return true;
}

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
  // The box this rank holds, in the spec's coordinates (the view's when there is one).
  const bool described = spec_describes(spec, local);
  const Shape vbox = described ? spec.box_shape(local) : local;
  const Shape vglobal = described ? spec.global_shape : local;
  GRAFT_CHECK(!described || (vbox.size() == local.size() ? vglobal == e.shape : true), e.param,
              ": spec ", spec.str(), " is not of the global shape ", shape_str(e.shape));
  GRAFT_CHECK(described || local == e.shape, e.param, ": local shape ", shape_str(local),
              " without a shard spec is not the global ", shape_str(e.shape));
  Box mine{Shape(vbox.size(), 0), vbox};
  if (described)
    for (size_t d = 0; d < vbox.size(); ++d)
      if (spec.dims[d].group != LayoutGroup::kNone) mine.at[d] = spec.dims[d].offset;
  const bool viewed = vbox.size() == local.size() + 1;  // a leading dimension: [S, A, ...]
  const int64_t A = viewed ? vglobal[1] : 0;

  std::vector<LocalPiece> out;
  for (size_t j = 0; j < e.pieces.size(); ++j) {
    const HfPiece& p = e.pieces[j];
    // The piece as boxes in spec coordinates, each with the HF row its start reads.
    std::vector<std::pair<Box, int64_t>> boxes;
    if (!viewed) {
      Box b{Shape(vglobal.size(), 0), vglobal};
      b.at[p.dim] = p.start;
      b.size[p.dim] = p.length;
      boxes.emplace_back(b, p.hf_start);
    } else {
      GRAFT_CHECK(p.dim == 0, e.param, ": piece ", p.hf_name, " runs along dim ", p.dim,
                  " of a parameter viewed as ", shape_str(vglobal), "; dim 0 only");
      for (int64_t lo = p.start; lo < p.start + p.length;) {
        const int64_t outer = lo / A, hi = std::min(p.start + p.length, (outer + 1) * A);
        Box b{Shape(vglobal.size(), 0), vglobal};
        b.at[0] = outer;
        b.size[0] = 1;
        b.at[1] = lo - outer * A;
        b.size[1] = hi - lo;
        boxes.emplace_back(b, p.hf_start + (lo - p.start));
        lo = hi;
      }
    }
    for (const auto& [b, hf_row] : boxes) {
      Box x;
      if (!intersect(b, mine, &x)) continue;
      const int rows = viewed ? 1 : p.dim;  // the spec dimension the piece's HF rows run along
      LocalPiece lp;
      lp.hf_name = p.hf_name;
      lp.piece = j;
      if (!viewed) {
        lp.box = x.size;
        lp.hf_offset = x.at;
        lp.local_offset.resize(x.at.size());
        for (size_t d = 0; d < x.at.size(); ++d) lp.local_offset[d] = x.at[d] - mine.at[d];
      } else {  // back to the local rank: [S, A, rest] -> [S*A, rest]
        lp.box.assign(x.size.begin() + 1, x.size.end());
        lp.hf_offset.assign(x.at.begin() + 1, x.at.end());
        lp.local_offset.resize(lp.box.size());
        for (size_t d = 1; d < lp.box.size(); ++d)
          lp.local_offset[d] = x.at[d + 1] - mine.at[d + 1];
        lp.local_offset[0] = (x.at[0] - mine.at[0]) * vbox[1] + (x.at[1] - mine.at[1]);
      }
      // Along the piece's own dimension the HF tensor is offset from the global one.
      const size_t hd = viewed ? 0 : static_cast<size_t>(p.dim);
      lp.hf_offset[hd] = hf_row + (x.at[rows] - b.at[rows]);
      out.push_back(std::move(lp));
    }
  }
  return out;
}

}  // namespace graft
