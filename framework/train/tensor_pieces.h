// Pieces of logical tensors: the storage of sharded native checkpoints.
//
// A logical tensor ("model/<param>", "optim/m/<param>", ...) has one global shape. A rank holds
// a *box* of it (a hyper-rectangle: box_offset, box_shape per dimension; tensor and context
// parallelism split along one dimension), and of that box possibly only a flat row-major range
// [flat_offset, flat_offset + flat_len) (ZeRO shards hold such ranges of the flattened box).
// Element e of a piece's data is box element flat_offset + e, i.e. the global element at
//   box_offset + unravel(flat_offset + e, box_shape).
//
// Folder layout (one per checkpoint):
//   rank-RRRRR.safetensors   rank R's pieces, each a 1-D tensor of flat_len elements
//   rank-RRRRR.json          rank R's piece list: name, key, dtype, global_shape, box, flat range
//   manifest.json            every piece of every tensor, merged by rank 0 after all ranks wrote:
//     {"format": "graft-sharded", "version": 1, "world": W, "layout": {...informational...},
//      "tensors": {name: {"dtype": "F32", "shape": [..],
//                         "pieces": [{"file", "key", "box_offset", "box_shape",
//                                     "flat_offset", "flat_len"}, ..]}}}
// The pieces of a tensor cover it exactly once: write_manifest and ShardedReader::open both
// check it. Reading maps a box (and flat range) of any other split onto the stored pieces and
// copies only their overlaps, so a checkpoint loads into any layout.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/core/parameter.h"
#include "framework/core/tensor.h"

namespace graft {

class SafetensorsFile;

struct TensorPiece {
  std::string name;         // logical name, e.g. "model/layers.0.self_attn.q_proj.weight",
                            // "optim/m/<param>", "optim/v/<param>", "optim/master/<param>"
  Shape global_shape;       // the logical tensor's shape
  Shape box_offset;         // where this rank's local tensor sits in the global one (per dim)
  Shape box_shape;          // the local tensor's shape
  int64_t flat_offset = 0;  // a flat (row-major) range of the box: ZeRO shards hold such ranges
  int64_t flat_len = -1;    // -1 = the whole box
  Tensor data;              // flat_len elements (any shape of that size), CPU or CUDA
};

// A whole tensor as one piece (box = the whole global shape).
TensorPiece whole_piece(const std::string& name, const Tensor& data);
// The box a parameter's local tensor is of its logical tensor: the offsets of `spec` (0 along
// whole dimensions). A spec that does not describe `local` (say, a hand-made Parameter with no
// spec) counts as replicated.
Shape spec_box_offset(const ShardSpec& spec, const Shape& local);
// The box's shape: the spec's view of the local tensor (te's fc1 [2, F/tp, H]), or its shape.
Shape spec_box_shape(const ShardSpec& spec, const Shape& local);
// `local`, the part of logical tensor `name` that `spec` describes, as a piece.
TensorPiece spec_piece(const std::string& name, const ShardSpec& spec, const Tensor& local);

// This rank's pieces -> DIR/rank-RRRRR.safetensors + DIR/rank-RRRRR.json, each fsynced (the
// json written last). Pieces are checked (box inside the global shape, flat range inside the
// box, data size); Error naming the piece otherwise.
void write_rank_pieces(const std::string& dir, int rank, const std::vector<TensorPiece>& pieces);

// After every rank wrote (rank 0 only): merges exactly `world` rank-*.json into manifest.json
// (fsynced). InputError naming the file for a missing or malformed rank file (or one beyond
// `world`); Error naming the tensor when its pieces disagree on dtype or global shape, leave part
// of it uncovered or overlap. `layout` (may be null) is stored for information only.
void write_manifest(const std::string& dir, int world, const nlohmann::json& layout = nullptr);

class ShardedReader {
 public:
  // Opens DIR/manifest.json and checks it (format, every piece inside its tensor, every tensor
  // covered exactly once, every referenced file present). InputError naming the file otherwise.
  static ShardedReader open(const std::string& checkpoint);

  const std::string& manifest_path() const { return manifest_path_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const;
  // InputError naming the manifest when there is no such tensor.
  Shape global_shape(const std::string& name) const;
  DType dtype(const std::string& name) const;

  // Fills `out` (contiguous, CPU or CUDA, any dtype: converted) with the flat range
  // [flat_offset, flat_offset + out.numel()) of the box [box_offset, box_offset + box_shape) of
  // the global tensor, reading only the overlapping parts of the pieces (memory-mapped files).
  // Error when the box or range lies outside the tensor; InputError naming the file when a piece
  // file lacks its key or holds another dtype or size than the manifest says.
  void read(const std::string& name, const Shape& box_offset, const Shape& box_shape,
            int64_t flat_offset, Tensor& out) const;
  // The whole tensor on the CPU in its stored dtype.
  Tensor read(const std::string& name) const;
  // This rank's box of `name` as `spec` describes `local` (spec_box_offset, local's shape).
  void read_box(const std::string& name, const ShardSpec& spec, Tensor& local) const;

  struct Piece {
    int file = 0;  // index into files_
    std::string key;
    Shape box_offset, box_shape;
    int64_t flat_offset = 0, flat_len = 0;
  };
  struct Entry {
    DType dtype = DType::kF32;
    Shape global_shape;
    std::vector<Piece> pieces;
  };

 private:
  const Entry& entry(const std::string& name) const;
  Tensor piece_data(const Entry& e, const std::string& name, size_t piece) const;

  std::string dir_, manifest_path_;
  std::map<std::string, Entry> tensors_;
  std::vector<std::string> files_;  // file names in dir_
  // Opened on first use (not thread-safe).
  mutable std::vector<std::shared_ptr<SafetensorsFile>> opened_;
};

}  // namespace graft
