// Tensor pieces: written as N simulated ranks in one split, read back bit-exactly in another;
// incomplete, overlapping, missing and corrupt pieces are errors naming the file.
#include "framework/train/tensor_pieces.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/train/test_util.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// One rank's part of a tensor: a box and a flat range of it.
struct Part {
  Shape offset, shape;
  int64_t flat_offset = 0, flat_len = 0;
};

std::string show(const Part& p) {
  return str(shape_str(p.offset), "+", shape_str(p.shape), " flat ", p.flat_offset, "+",
             p.flat_len);
}

// Splits `global` along `dim` into `n` near-equal boxes (the first ones one larger).
std::vector<Part> box_split(const Shape& global, int dim, int n) {
  std::vector<Part> out;
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t len = global[dim] / n + (i < global[dim] % n ? 1 : 0);
    Part p{Shape(global.size(), 0), global, 0, 0};
    p.offset[dim] = at;
    p.shape[dim] = len;
    p.flat_len = shape_numel(p.shape);
    out.push_back(p);
    at += len;
  }
  return out;
}

// ZeRO-style: each of `parts` is flattened and cut into `n` shards of ceil(size / n) elements;
// the padding past the end is not stored, so the last shards are short (or empty).
std::vector<Part> flat_split(const std::vector<Part>& parts, int n) {
  std::vector<Part> out;
  for (const Part& b : parts) {
    const int64_t size = shape_numel(b.shape), shard = (size + n - 1) / n;
    for (int r = 0; r < n; ++r) {
      Part p = b;
      p.flat_offset = std::min(size, r * shard);
      p.flat_len = std::min(size, (r + 1) * shard) - p.flat_offset;
      out.push_back(p);
    }
  }
  return out;
}

std::vector<Part> whole(const Shape& global) { return box_split(global, 0, 1); }

// The reference: the part's elements, walked element by element over the box.
std::vector<float> extract(const std::vector<float>& g, const Shape& global, const Part& p) {
  std::vector<float> out;
  const Shape stride = contiguous_strides(global);
  Shape idx(global.size(), 0);
  for (int64_t f = 0; f < shape_numel(p.shape); ++f) {
    if (f >= p.flat_offset && f < p.flat_offset + p.flat_len) {
      int64_t at = 0;
      for (size_t d = 0; d < idx.size(); ++d) at += (p.offset[d] + idx[d]) * stride[d];
      out.push_back(g[static_cast<size_t>(at)]);
    }
    for (int d = static_cast<int>(idx.size()) - 1; d >= 0; --d) {
      if (++idx[d] < p.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

std::vector<float> values(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint32_t x = seed;
  for (auto& e : v) {
    x = x * 1664525u + 1013904223u;
    e = static_cast<float>(static_cast<int32_t>(x)) * 1e-9f;
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Logical {
  std::string name;
  Shape shape;
  std::vector<float> data;
};

// Writes `tensors`, tensor t split as `parts[t]` with part i on rank i % world, then the
// manifest.
void write_split(const std::string& dir, const std::vector<Logical>& tensors,
                 const std::vector<std::vector<Part>>& parts, int world) {
  std::vector<std::vector<TensorPiece>> by_rank(static_cast<size_t>(world));
  for (size_t t = 0; t < tensors.size(); ++t) {
    for (size_t i = 0; i < parts[t].size(); ++i) {
      const Part& p = parts[t][i];
      std::vector<float> d = extract(tensors[t].data, tensors[t].shape, p);
      TensorPiece piece{tensors[t].name,
                        tensors[t].shape,
                        p.offset,
                        p.shape,
                        p.flat_offset,
                        p.flat_len,
                        Tensor::from_vector(d, {p.flat_len})};
      by_rank[i % static_cast<size_t>(world)].push_back(piece);
    }
  }
  for (int r = 0; r < world; ++r) write_rank_pieces(dir, r, by_rank[static_cast<size_t>(r)]);
  write_manifest(dir, world);
}

struct Split {
  std::string label;
  std::function<std::vector<Part>(const Shape&)> make;
};

std::vector<Split> splits_2d() {
  return {{"whole", whole},
          {"dim0x2", [](const Shape& s) { return box_split(s, 0, 2); }},
          {"dim0x3", [](const Shape& s) { return box_split(s, 0, 3); }},
          {"dim1x2", [](const Shape& s) { return box_split(s, 1, 2); }},
          {"dim1x3", [](const Shape& s) { return box_split(s, 1, 3); }},
          {"flatx2", [](const Shape& s) { return flat_split(whole(s), 2); }},
          {"flatx4", [](const Shape& s) { return flat_split(whole(s), 4); }},
          {"dim1x2-flatx3", [](const Shape& s) { return flat_split(box_split(s, 1, 2), 3); }}};
}

// Every write split against every read split of a 7x10 matrix (odd sizes, so boxes and flat
// shards straddle rows): the pieces read back are exactly the reference extraction.
TEST(TensorPieces, AnySplitReadsBackInAnyOther) {
  const Shape shape{7, 10};
  const Logical t{"model/w", shape, values(70, 7)};
  for (const Split& w : splits_2d()) {
    TempDir d;
    const std::vector<Part> written = w.make(shape);
    write_split(d.path(), {t}, {written}, static_cast<int>(written.size()));
    ShardedReader r = ShardedReader::open(d.path());
    EXPECT_EQ(r.global_shape("model/w"), shape);
    EXPECT_EQ(r.dtype("model/w"), DType::kF32);
    EXPECT_TRUE(same_bits(r.read("model/w").to_f32_vector(), t.data)) << w.label;
    for (const Split& rd : splits_2d()) {
      for (const Part& p : rd.make(shape)) {
        Tensor out = Tensor::empty({p.flat_len}, DType::kF32);
        r.read("model/w", p.offset, p.shape, p.flat_offset, out);
        EXPECT_TRUE(same_bits(out.to_f32_vector(), extract(t.data, shape, p)))
            << "written " << w.label << ", read " << rd.label << " part " << show(p);
      }
    }
  }
}

// ZeRO over 4 ranks of an odd-sized vector (padded to 4 x 250001), read as 3 boxes and as 3 flat
// shards; and a 3-D tensor split on its middle dimension read as flat shards.
TEST(TensorPieces, OddSizesAcrossRankCounts) {
  TempDir d;
  const Logical v{"optim/m/big", {1000003}, values(1000003, 3)};
  const Logical c{"model/cube", {3, 5, 4}, values(60, 5)};
  write_split(d.path(), {v, c}, {flat_split(whole(v.shape), 4), box_split(c.shape, 1, 3)}, 4);
  ShardedReader r = ShardedReader::open(d.path());
  EXPECT_EQ(r.names(), (std::vector<std::string>{"model/cube", "optim/m/big"}));
  EXPECT_TRUE(r.has("optim/m/big"));
  EXPECT_FALSE(r.has("optim/m/other"));
  for (const auto& parts : {box_split(v.shape, 0, 3), flat_split(whole(v.shape), 3)}) {
    for (const Part& p : parts) {
      Tensor out = Tensor::empty({p.flat_len}, DType::kF32);
      r.read(v.name, p.offset, p.shape, p.flat_offset, out);
      EXPECT_TRUE(same_bits(out.to_f32_vector(), extract(v.data, v.shape, p))) << show(p);
    }
  }
  for (const Part& p : flat_split(box_split(c.shape, 2, 2), 3)) {
    Tensor out = Tensor::empty({p.flat_len}, DType::kF32);
    r.read(c.name, p.offset, p.shape, p.flat_offset, out);
    EXPECT_TRUE(same_bits(out.to_f32_vector(), extract(c.data, c.shape, p))) << show(p);
  }
  // The whole box as a shaped tensor, and converted to bf16 on the way.
  Tensor cube = Tensor::empty({3, 5, 4}, DType::kBF16);
  r.read(c.name, {0, 0, 0}, {3, 5, 4}, 0, cube);
  std::vector<float> want;
  for (float x : c.data) want.push_back(bf16_to_f32(f32_to_bf16(x)));
  EXPECT_EQ(cube.to_f32_vector(), want);
}

TEST(TensorPieces, StoredDtypeIsKept) {
  TempDir d;
  Tensor b = Tensor::from_vector(values(12, 9), {3, 4}).to(DType::kBF16);
  Tensor s = Tensor::from_vector(std::vector<int64_t>{42}, {});
  write_rank_pieces(d.path(), 0, {whole_piece("model/b", b), whole_piece("state/n", s)});
  write_manifest(d.path(), 1, {{"tp", 1}});
  ShardedReader r = ShardedReader::open(d.path());
  EXPECT_EQ(r.dtype("model/b"), DType::kBF16);
  EXPECT_EQ(r.read("model/b").to_f32_vector(), b.to_f32_vector());
  EXPECT_EQ(r.read("state/n").item({}), 42.0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(TensorPieces, ManifestRefusesGapsOverlapsAndMissingRanks) {
  const Shape shape{6, 4};
  const Logical t{"model/w", shape, values(24, 1)};
  auto parts = box_split(shape, 0, 2);
  {  // Rank 1 forgot its last row.
    TempDir d;
    auto short_parts = parts;
    short_parts[1].shape[0] -= 1;
    short_parts[1].flat_len -= 4;
    std::string msg = error_of([&] { write_split(d.path(), {t}, {short_parts}, 2); });
    EXPECT_NE(msg.find("tensor \"model/w\" [6, 4]: elements [20, 24) of 24 are in no piece"),
              std::string::npos)
        << msg;
    EXPECT_FALSE(fs::exists(d / "manifest.json"));
  }
  {  // Both ranks wrote row 2.
    TempDir d;
    auto wide = parts;
    wide[1].offset[0] = 2;
    wide[1].shape[0] = 4;
    wide[1].flat_len = 16;
    std::string msg = error_of([&] { write_split(d.path(), {t}, {wide}, 2); });
    EXPECT_NE(msg.find("\"model/w\" [6, 4]: element 8 is in two pieces (rank-00000.json and "
                       "rank-00001.json)"),
              std::string::npos)
        << msg;
  }
  {  // A rank that never wrote, and a stale rank file from a larger world.
    TempDir d;
    write_rank_pieces(d.path(), 0, {});
    std::string msg = error_of([&] { write_manifest(d.path(), 2); });
    EXPECT_NE(msg.find(d / "rank-00001.json: missing (rank 1 of 2 did not write its pieces)"),
              std::string::npos)
        << msg;
    write_rank_pieces(d.path(), 1, {});
    write_rank_pieces(d.path(), 2, {});
    msg = error_of([&] { write_manifest(d.path(), 2); });
    EXPECT_NE(msg.find(d / "rank-00002.json: a rank file beyond world 2"), std::string::npos)
        << msg;
  }
  {  // Ranks disagreeing on the global shape.
    TempDir d;
    write_rank_pieces(d.path(), 0, {whole_piece("model/w", Tensor::zeros({2, 2}, DType::kF32))});
    write_rank_pieces(d.path(), 1, {whole_piece("model/w", Tensor::zeros({2, 3}, DType::kF32))});
    std::string msg = error_of([&] { write_manifest(d.path(), 2); });
    EXPECT_NE(msg.find("tensor \"model/w\" is f32[2, 3] in " + (d / "rank-00001.json") +
                       " but f32[2, 2] in rank-00000.json"),
              std::string::npos)
        << msg;
  }
  // A piece that does not fit its box is a caller bug.
  TempDir d;
  TensorPiece bad{"model/w", {4}, {2}, {3}, 0, -1, Tensor::zeros({3}, DType::kF32)};
  EXPECT_THROW(write_rank_pieces(d.path(), 0, {bad}), Error);
  bad.box_offset = {1};
  bad.flat_len = 2;
  EXPECT_THROW(write_rank_pieces(d.path(), 0, {bad}), Error);  // 3 elements for a range of 2
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Rewrites DIR/manifest.json after `edit` changed it.
void edit_manifest(const std::string& dir,
                   const std::function<void(nlohmann::ordered_json&)>& edit) {
  auto j = nlohmann::ordered_json::parse(read_file(dir + "/manifest.json"));
  edit(j);
  test::write_text(dir + "/manifest.json", j.dump(1));
}

TEST(TensorPieces, ReaderRefusesCorruptCheckpoints) {
  const Logical t{"model/w", {6, 4}, values(24, 2)};
  auto fresh = [&](const TempDir& d) { write_split(d.path(), {t}, {box_split(t.shape, 0, 2)}, 2); };
  auto open_error = [](const TempDir& d) {
    return error_of([&] { ShardedReader::open(d.path()); });
  };
  const std::string manifest = "manifest.json";
  {
    TempDir d;
    EXPECT_NE(open_error(d).find(d / "manifest.json: missing"), std::string::npos);
    fresh(d);
    test::write_text(d / manifest, read_file(d / manifest).substr(0, 40));  // truncated
    EXPECT_NE(open_error(d).find(d / "manifest.json: "), std::string::npos) << open_error(d);
  }
  {
    TempDir d;
    fresh(d);
    edit_manifest(d.path(), [](auto& j) { j["format"] = "graft-other"; });
    EXPECT_NE(open_error(d).find(d / "manifest.json: not a graft-sharded file"), std::string::npos)
        << open_error(d);
  }
  {  // Edited so that a row is in no piece.
    TempDir d;
    fresh(d);
    edit_manifest(d.path(), [](auto& j) { j["tensors"]["model/w"]["pieces"][0]["flat_len"] = 8; });
    const std::string msg = open_error(d);
    EXPECT_NE(msg.find(d / "manifest.json: tensor \"model/w\": elements [8, 12) of 24 are in no "
                           "piece"),
              std::string::npos)
        << msg;
  }
  {  // A box outside the tensor.
    TempDir d;
    fresh(d);
    edit_manifest(d.path(),
                  [](auto& j) { j["tensors"]["model/w"]["pieces"][0]["box_shape"][0] = 9; });
    const std::string msg = open_error(d);
    EXPECT_NE(msg.find(d / "manifest.json: tensor \"model/w\" piece 0: box at [0, 0] of shape "
                           "[9, 4] is not inside the global shape [6, 4]"),
              std::string::npos)
        << msg;
  }
  {  // A missing piece file.
    TempDir d;
    fresh(d);
    fs::remove(d / "rank-00001.safetensors");
    const std::string msg = open_error(d);
    EXPECT_NE(msg.find("its file " + (d / "rank-00001.safetensors") + " is missing"),
              std::string::npos)
        << msg;
  }
  {  // A key the data file does not hold: found when the piece is read.
    TempDir d;
    fresh(d);
    edit_manifest(d.path(),
                  [](auto& j) { j["tensors"]["model/w"]["pieces"][0]["key"] = "model/x"; });
    ShardedReader r = ShardedReader::open(d.path());
    const std::string msg = error_of([&] { r.read("model/w"); });
    EXPECT_NE(msg.find(d / "rank-00000.safetensors: no tensor \"model/x\""), std::string::npos)
        << msg;
    EXPECT_NE(error_of([&] {
                r.global_shape("model/nope");
              }).find(d / "manifest.json: no tensor \"model/nope\""),
              std::string::npos);
  }
}

}  // namespace
}  // namespace graft
