#include "framework/train/tensor_pieces.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include "framework/io/atomic_file.h"
#include "framework/io/safetensors.h"
#include "framework/io/strict_json.h"

namespace graft {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

constexpr int kVersion = 1;
constexpr size_t kMaxJsonBytes = size_t{1} << 30;
constexpr int kMaxJsonDepth = 8;  // manifest: tensors / name / pieces / [i] / box_offset
constexpr int64_t kMaxElements = int64_t{1} << 62;

std::string rank_file(int rank, const char* ext) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "rank-%05d.%s", rank, ext);
  return buf;
}

// Empty when `box` (offset, shape) lies inside `global` and [flat_offset, flat_offset +
// flat_len) inside the box; the problem otherwise.
std::string geometry_problem(const Shape& global, const Shape& offset, const Shape& box,
                             int64_t flat_offset, int64_t flat_len) {
  if (offset.size() != global.size() || box.size() != global.size())
    return str("box offset ", shape_str(offset), " / shape ", shape_str(box),
               " do not have the rank of the global shape ", shape_str(global));
  int64_t global_n = 1, box_n = 1;
  for (size_t d = 0; d < global.size(); ++d) {
    if (global[d] < 0 || offset[d] < 0 || box[d] < 0 || offset[d] > global[d] - box[d])
      return str("box at ", shape_str(offset), " of shape ", shape_str(box),
                 " is not inside the global shape ", shape_str(global));
    if (global[d] != 0 && global_n > kMaxElements / global[d])
      return str("global shape ", shape_str(global), " has too many elements");
    global_n *= global[d];
    box_n *= box[d];
  }
  if (flat_offset < 0 || flat_len < 0 || flat_offset > box_n - flat_len)
    return str("flat range [", flat_offset, ", ", flat_offset + flat_len,
               ") is not inside the box of ", box_n, " elements");
  return "";
}

// Calls fn(global_start, len, pos) for the contiguous global runs that a box and flat range
// cover, in increasing global order; pos is the run's first index among the range's elements.
// Dimensions after the last partial one are whole, so each run spans box[k] * stride[k].
template <class Fn>
void for_each_run(const Shape& global, const Shape& offset, const Shape& box, int64_t flat_offset,
                  int64_t flat_len, Fn&& fn) {
  if (flat_len <= 0) return;
  const int n = static_cast<int>(global.size());
  if (n == 0) {
    fn(int64_t{0}, int64_t{1}, int64_t{0});
    return;
  }
  const Shape stride = contiguous_strides(global);
  int k = n - 1;
  while (k > 0 && box[k] == global[k]) --k;
  const int64_t run_len = box[k] * stride[k];
  const int64_t first = flat_offset / run_len, last = (flat_offset + flat_len - 1) / run_len;
  std::vector<int64_t> idx(static_cast<size_t>(k));  // box index of run `r` along dims < k
  int64_t rem = first;
  for (int d = k - 1; d >= 0; --d) {
    idx[d] = rem % box[d];
    rem /= box[d];
  }
  const int64_t end = flat_offset + flat_len;
  for (int64_t r = first; r <= last; ++r) {
    int64_t g = offset[k] * stride[k];
    for (int d = 0; d < k; ++d) g += (offset[d] + idx[d]) * stride[d];
    const int64_t b = std::max(flat_offset, r * run_len), e = std::min(end, (r + 1) * run_len);
    fn(g + (b - r * run_len), e - b, b - flat_offset);
    for (int d = k - 1; d >= 0; --d) {
      if (++idx[d] < box[d]) break;
      idx[d] = 0;
    }
  }
}

struct Run {
  int64_t global, len, pos;
  size_t piece;
};

// The runs of every piece of `e`, sorted by global position.
std::vector<Run> piece_runs(const ShardedReader::Entry& e) {
  std::vector<Run> runs;
  for (size_t i = 0; i < e.pieces.size(); ++i) {
    const auto& p = e.pieces[i];
    for_each_run(e.global_shape, p.box_offset, p.box_shape, p.flat_offset, p.flat_len,
                 [&](int64_t g, int64_t len, int64_t pos) {
                   runs.push_back({g, len, pos, i});
                 });
  }
  std::sort(runs.begin(), runs.end(),
            [](const Run& a, const Run& b) { return a.global < b.global; });
  return runs;
}

// Empty when the pieces of `e` cover its global tensor exactly once; the problem otherwise.
// `who(i)` names piece i for the message.
std::string coverage_problem(const ShardedReader::Entry& e,
                             const std::function<std::string(size_t)>& who) {
  const int64_t n = shape_numel(e.global_shape);
  int64_t covered = 0;
  const Run* prev = nullptr;
  for (const Run& r : piece_runs(e)) {
    if (r.global > covered)
      return str("elements [", covered, ", ", r.global, ") of ", n, " are in no piece");
    if (r.global < covered)
      return str("element ", r.global, " is in two pieces (", who(prev->piece), " and ",
                 who(r.piece), ")");
    covered = r.global + r.len;
    prev = &r;
  }
  if (covered != n) return str("elements [", covered, ", ", n, ") of ", n, " are in no piece");
  return "";
}

[[noreturn]] void bad(const std::string& file, const std::string& where, const std::string& what) {
  throw InputError(str(file, ": ", where, where.empty() ? "" : ": ", what));
}

const Json& field(const Json& obj, const char* key, const std::string& file,
                  const std::string& where) {
  if (!obj.is_object()) bad(file, where, "expected an object");
  auto it = obj.find(key);
  if (it == obj.end()) bad(file, where, str("missing field \"", key, "\""));
  return *it;
}

int64_t get_count(const Json& obj, const char* key, const std::string& file,
                  const std::string& where) {
  const Json& j = field(obj, key, file, where);
  if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() > kMaxElements)
    bad(file, where, str("\"", key, "\" must be a non-negative integer"));
  return j.get<int64_t>();
}

std::string get_string(const Json& obj, const char* key, const std::string& file,
                       const std::string& where) {
  const Json& j = field(obj, key, file, where);
  if (!j.is_string()) bad(file, where, str("\"", key, "\" must be a string"));
  return j.get<std::string>();
}

Shape get_shape(const Json& obj, const char* key, const std::string& file,
                const std::string& where) {
  const Json& j = field(obj, key, file, where);
  if (!j.is_array()) bad(file, where, str("\"", key, "\" must be an array of integers"));
  Shape s;
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxElements)
      bad(file, where, str("\"", key, "\" must be an array of non-negative integers"));
    s.push_back(v.get<int64_t>());
  }
  return s;
}

DType get_dtype(const Json& obj, const std::string& file, const std::string& where) {
  const std::string name = get_string(obj, "dtype", file, where);
  auto dt = dtype_from_safetensors(name);
  if (!dt) bad(file, where, str("unknown dtype ", io::quoted(name)));
  return *dt;
}

void check_format(const Json& j, const char* format, const std::string& file) {
  if (!j.is_object() || !j.contains("format") || j["format"] != format)
    bad(file, "", str("not a ", format, " file (expected \"format\": \"", format, "\")"));
  if (get_count(j, "version", file, "") != kVersion)
    bad(file, "", str("version ", j["version"].dump(), ", this graft reads version ", kVersion));
}

// Reads the geometry fields shared by rank files and the manifest into `p`; InputError naming
// the file when they do not fit `global`.
void parse_geometry(const Json& j, const Shape& global, const std::string& file,
                    const std::string& where, ShardedReader::Piece* p) {
  p->key = get_string(j, "key", file, where);
  p->box_offset = get_shape(j, "box_offset", file, where);
  p->box_shape = get_shape(j, "box_shape", file, where);
  p->flat_offset = get_count(j, "flat_offset", file, where);
  p->flat_len = get_count(j, "flat_len", file, where);
  const std::string problem =
      geometry_problem(global, p->box_offset, p->box_shape, p->flat_offset, p->flat_len);
  if (!problem.empty()) bad(file, where, problem);
}

// InputError naming the data file unless it holds `key` as `dtype` with `n` elements.
void check_piece_tensor(const SafetensorsFile& f, const std::string& key, DType dtype, int64_t n,
                        const std::string& listed_in) {
  const TensorInfo* info = f.find(key);
  if (!info)
    throw InputError(
        str(f.path(), ": no tensor ", io::quoted(key), " (", listed_in, " lists it as a piece)"));
  if (info->dtype != dtype || shape_numel(info->shape) != n)
    throw InputError(str(f.path(), ": tensor ", io::quoted(key), " is ",
                         dtype_safetensors_name(info->dtype), shape_str(info->shape), ", ",
                         listed_in, " expects ", dtype_safetensors_name(dtype), " with ", n,
                         " elements"));
}

Json shape_json(const Shape& s) {
  Json j = Json::array();
  for (int64_t v : s) j.push_back(v);
  return j;
}

}  // namespace

TensorPiece whole_piece(const std::string& name, const Tensor& data) {
  TensorPiece p;
  p.name = name;
  p.global_shape = data.shape();
  p.box_offset.assign(data.shape().size(), 0);
  p.box_shape = data.shape();
  p.data = data;
  return p;
}

Shape spec_box_offset(const ShardSpec& spec, const Shape& local_shape) {
  const Shape local = spec_box_shape(spec, local_shape);
  Shape offset(local.size(), 0);
  if (spec.dims.size() != local.size() || spec.global_shape.size() != local.size()) return offset;
  for (size_t d = 0; d < local.size(); ++d)
    if (spec.dims[d].group != LayoutGroup::kNone) offset[d] = spec.dims[d].offset;
  return offset;
}

Shape spec_box_shape(const ShardSpec& spec, const Shape& local) {
  if (spec.view.empty() || shape_numel(spec.view) != shape_numel(local)) return local;
  return spec.view;
}

TensorPiece spec_piece(const std::string& name, const ShardSpec& spec, const Tensor& local) {
  TensorPiece p;
  p.name = name;
  const Shape box = spec_box_shape(spec, local.shape());
  const bool fits = spec.dims.size() == box.size() && spec.global_shape.size() == box.size();
  p.global_shape = fits ? spec.global_shape : box;
  p.box_offset = spec_box_offset(spec, local.shape());
  p.box_shape = box;
  p.data = local;
  return p;
}

void write_rank_pieces(const std::string& dir, int rank, const std::vector<TensorPiece>& pieces) {
  GRAFT_CHECK(rank >= 0, "rank ", rank);
  std::vector<std::pair<std::string, Tensor>> tensors;
  Json list = Json::array();
  std::map<std::string, int> uses;
  for (const auto& p : pieces) {
    GRAFT_CHECK(!p.name.empty() && p.data.defined(), "piece ", io::quoted(p.name),
                " needs a name and data");
    std::string problem = geometry_problem(p.global_shape, p.box_offset, p.box_shape, 0, 0);
    const int64_t len =
        p.flat_len < 0 && problem.empty() ? shape_numel(p.box_shape) - p.flat_offset : p.flat_len;
    if (problem.empty())
      problem = geometry_problem(p.global_shape, p.box_offset, p.box_shape, p.flat_offset, len);
    GRAFT_CHECK(problem.empty(), "piece ", io::quoted(p.name), ": ", problem);
    GRAFT_CHECK(p.data.numel() == len, "piece ", io::quoted(p.name), ": data ", p.data.str(),
                " does not hold its ", len, " elements");
    const int n = uses[p.name]++;
    const std::string key = n == 0 ? p.name : str(p.name, "#", n);
    tensors.emplace_back(key, p.data.to(Device::cpu()).contiguous().view({len}));
    list.push_back({{"name", p.name},
                    {"key", key},
                    {"dtype", dtype_safetensors_name(p.data.dtype())},
                    {"global_shape", shape_json(p.global_shape)},
                    {"box_offset", shape_json(p.box_offset)},
                    {"box_shape", shape_json(p.box_shape)},
                    {"flat_offset", p.flat_offset},
                    {"flat_len", len}});
  }
  const std::string data_file = rank_file(rank, "safetensors");
  write_safetensors(dir + "/" + data_file, tensors, {{"format", "graft-pieces"}});
  const Json j = {{"format", "graft-pieces"},
                  {"version", kVersion},
                  {"rank", rank},
                  {"file", data_file},
                  {"pieces", list}};
  io::write_file_atomic(dir + "/" + rank_file(rank, "json"), j.dump(1) + "\n");
}

void write_manifest(const std::string& dir, int world, const nlohmann::json& layout) {
  GRAFT_CHECK(world >= 1, "world ", world);
  std::map<std::string, ShardedReader::Entry> tensors;
  std::vector<std::string> files;
  for (int r = 0; r < world; ++r) {
    const std::string path = dir + "/" + rank_file(r, "json");
    GRAFT_INPUT_CHECK(fs::is_regular_file(path), path, ": missing (rank ", r, " of ", world,
                      " did not write its pieces)");
    const Json j = io::read_json_file(path, kMaxJsonBytes, kMaxJsonDepth);
    check_format(j, "graft-pieces", path);
    GRAFT_INPUT_CHECK(get_count(j, "rank", path, "") == r, path, ": \"rank\" is ", j["rank"].dump(),
                      ", expected ", r);
    const std::string data_file = get_string(j, "file", path, "");
    GRAFT_INPUT_CHECK(data_file == rank_file(r, "safetensors"), path, ": \"file\" is ",
                      io::quoted(data_file), ", expected ", rank_file(r, "safetensors"));
    auto data = SafetensorsFile::open(dir + "/" + data_file);
    const Json& list = field(j, "pieces", path, "");
    GRAFT_INPUT_CHECK(list.is_array(), path, ": \"pieces\" must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = str("piece ", i);
      const std::string name = get_string(list[i], "name", path, where);
      const DType dtype = get_dtype(list[i], path, where);
      const Shape global = get_shape(list[i], "global_shape", path, where);
      ShardedReader::Piece p;
      p.file = r;
      parse_geometry(list[i], global, path, where, &p);
      check_piece_tensor(*data, p.key, dtype, p.flat_len, path);
      auto [it, fresh] = tensors.try_emplace(name);
      ShardedReader::Entry& e = it->second;
      if (fresh) {
        e.dtype = dtype;
        e.global_shape = global;
      }
      GRAFT_CHECK(e.dtype == dtype && e.global_shape == global, dir, ": tensor ", io::quoted(name),
                  " is ", dtype_name(dtype), shape_str(global), " in ", path, " but ",
                  dtype_name(e.dtype), shape_str(e.global_shape), " in ",
                  rank_file(e.pieces.front().file, "json"));
      e.pieces.push_back(std::move(p));
    }
    files.push_back(data_file);
  }
  // A rank file beyond `world` means two saves of different worlds mixed in one folder.
  for (const auto& f : fs::directory_iterator(dir)) {
    const std::string n = f.path().filename().string();
    int r = -1;
    char tail[8] = {};
    if (std::sscanf(n.c_str(), "rank-%d.%7s", &r, tail) == 2 && r >= world &&
        std::string(tail) == "json")
      throw InputError(str(f.path().string(), ": a rank file beyond world ", world));
  }
  Json out_tensors = Json::object();
  for (const auto& [name, e] : tensors) {
    const std::string problem =
        coverage_problem(e, [&](size_t i) { return rank_file(e.pieces[i].file, "json"); });
    GRAFT_CHECK(problem.empty(), dir, ": tensor ", io::quoted(name), " ", shape_str(e.global_shape),
                ": ", problem);
    Json pieces = Json::array();
    for (const auto& p : e.pieces)
      pieces.push_back({{"file", files[static_cast<size_t>(p.file)]},
                        {"key", p.key},
                        {"box_offset", shape_json(p.box_offset)},
                        {"box_shape", shape_json(p.box_shape)},
                        {"flat_offset", p.flat_offset},
                        {"flat_len", p.flat_len}});
    out_tensors[name] = {{"dtype", dtype_safetensors_name(e.dtype)},
                         {"shape", shape_json(e.global_shape)},
                         {"pieces", pieces}};
  }
  Json m = {{"format", "graft-sharded"}, {"version", kVersion}, {"world", world}};
  if (!layout.is_null()) m["layout"] = Json::parse(layout.dump());
  m["tensors"] = out_tensors;
  io::write_file_atomic(dir + "/manifest.json", m.dump(1) + "\n");
}

ShardedReader ShardedReader::open(const std::string& checkpoint) {
  ShardedReader r;
  r.dir_ = checkpoint;
  r.manifest_path_ = checkpoint + "/manifest.json";
  const std::string& path = r.manifest_path_;
  GRAFT_INPUT_CHECK(fs::is_regular_file(path), path,
                    ": missing (not a graft sharded checkpoint, or an incomplete one)");
  const Json j = io::read_json_file(path, kMaxJsonBytes, kMaxJsonDepth);
  check_format(j, "graft-sharded", path);
  GRAFT_INPUT_CHECK(get_count(j, "world", path, "") >= 1, path, ": \"world\" must be >= 1");
  const Json& tensors = field(j, "tensors", path, "");
  GRAFT_INPUT_CHECK(tensors.is_object(), path, ": \"tensors\" must be an object");
  std::map<std::string, int> file_index;
  for (const auto& [name, t] : tensors.items()) {
    const std::string where = str("tensor ", io::quoted(name));
    Entry e;
    e.dtype = get_dtype(t, path, where);
    e.global_shape = get_shape(t, "shape", path, where);
    const Json& pieces = field(t, "pieces", path, where);
    if (!pieces.is_array()) bad(path, where, "\"pieces\" must be an array");
    for (size_t i = 0; i < pieces.size(); ++i) {
      const std::string pw = str(where, " piece ", i);
      const std::string file = get_string(pieces[i], "file", path, pw);
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        bad(path, pw,
            str("\"file\" must be a file name in the checkpoint folder, got ", io::quoted(file)));
      auto [it, fresh] = file_index.try_emplace(file, static_cast<int>(r.files_.size()));
      if (fresh) {
        if (!fs::is_regular_file(checkpoint + "/" + file))
          bad(path, pw, str("its file ", checkpoint, "/", file, " is missing"));
        r.files_.push_back(file);
      }
      Piece p;
      p.file = it->second;
      parse_geometry(pieces[i], e.global_shape, path, pw, &p);
      e.pieces.push_back(std::move(p));
    }
    const std::string problem = coverage_problem(
        e, [&](size_t i) { return str("piece ", i, " in ", r.files_[e.pieces[i].file]); });
    if (!problem.empty()) bad(path, where, problem);
    r.tensors_.emplace(name, std::move(e));
  }
  r.opened_.resize(r.files_.size());
  return r;
}

std::vector<std::string> ShardedReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : tensors_) out.push_back(name);
  return out;
}

bool ShardedReader::has(const std::string& name) const { return tensors_.count(name) != 0; }

const ShardedReader::Entry& ShardedReader::entry(const std::string& name) const {
  auto it = tensors_.find(name);
  GRAFT_INPUT_CHECK(it != tensors_.end(), manifest_path_, ": no tensor ", io::quoted(name));
  return it->second;
}

Shape ShardedReader::global_shape(const std::string& name) const {
  return entry(name).global_shape;
}

DType ShardedReader::dtype(const std::string& name) const { return entry(name).dtype; }

Tensor ShardedReader::piece_data(const Entry& e, const std::string& name, size_t piece) const {
  const Piece& p = e.pieces[piece];
  auto& f = opened_[static_cast<size_t>(p.file)];
  if (!f) f = SafetensorsFile::open(dir_ + "/" + files_[static_cast<size_t>(p.file)]);
  check_piece_tensor(*f, p.key, e.dtype, p.flat_len,
                     str(manifest_path_, " (tensor ", io::quoted(name), ")"));
  return f->tensor(p.key);
}

void ShardedReader::read(const std::string& name, const Shape& box_offset, const Shape& box_shape,
                         int64_t flat_offset, Tensor& out) const {
  const Entry& e = entry(name);
  const std::string problem =
      geometry_problem(e.global_shape, box_offset, box_shape, flat_offset, out.numel());
  GRAFT_CHECK(problem.empty(), "reading ", name, " ", shape_str(e.global_shape), ": ", problem);
  GRAFT_CHECK(out.is_contiguous(), "reading ", name, " into a non-contiguous ", out.str());
  Tensor host = out.device().is_cpu() ? out : Tensor::empty(out.shape(), out.dtype());
  char* dst = static_cast<char*>(host.raw());
  const size_t ds = dtype_size(out.dtype()), ss = dtype_size(e.dtype);
  const std::vector<Run> runs = piece_runs(e);
  std::vector<Tensor> data(e.pieces.size());
  for_each_run(e.global_shape, box_offset, box_shape, flat_offset, out.numel(),
               [&](int64_t g, int64_t len, int64_t pos) {
                 // The last piece run starting at or before g, then on while they overlap.
                 auto it = std::upper_bound(runs.begin(), runs.end(), g,
                                            [](int64_t v, const Run& r) { return v < r.global; });
                 GRAFT_CHECK(it != runs.begin(), "coverage of ", name, " was checked at open");
                 for (--it; len > 0; ++it) {
                   GRAFT_CHECK(it != runs.end() && it->global <= g && g < it->global + it->len,
                               "coverage of ", name, " was checked at open");
                   const int64_t n = std::min(len, it->global + it->len - g);
                   Tensor& src = data[it->piece];
                   if (!src.defined()) src = piece_data(e, name, it->piece);
                   const int64_t at = it->pos + (g - it->global);
                   convert_elements(static_cast<const char*>(src.raw()) + at * ss, e.dtype,
                                    dst + pos * ds, out.dtype(), static_cast<size_t>(n));
                   g += n;
                   pos += n;
                   len -= n;
                 }
               });
  if (!out.device().is_cpu()) out.copy_from(host);
}

void ShardedReader::read_box(const std::string& name, const ShardSpec& spec, Tensor& local) const {
  const Shape box = spec_box_shape(spec, local.shape());
  if (local.is_contiguous()) {
    read(name, spec_box_offset(spec, local.shape()), box, 0, local);
    return;
  }
  Tensor tmp = Tensor::empty(local.shape(), local.dtype(), local.device());
  read(name, spec_box_offset(spec, local.shape()), box, 0, tmp);
  local.copy_from(tmp);
}

Tensor ShardedReader::read(const std::string& name) const {
  const Entry& e = entry(name);
  Tensor out = Tensor::empty(e.global_shape, e.dtype);
  read(name, Shape(e.global_shape.size(), 0), e.global_shape, 0, out);
  return out;
}

}  // namespace graft
