// safetensors writer. Layout as the reference (Rust) writer produces it: tensors ordered by
// element size, largest first, then by name, so that every tensor begins at a multiple of its
// element size; the header JSON is padded with spaces to a multiple of 8 bytes.
#include <algorithm>
#include <numeric>
#include <set>

#include "framework/io/atomic_file.h"
#include "framework/io/safetensors.h"
#include "framework/io/strict_json.h"

namespace graft {
namespace {

std::string json_string(const std::string& path, const std::string& s, const char* what) {
  GRAFT_INPUT_CHECK(!io::find_invalid_utf8(s.data(), s.size()), path, ": ", what, " ",
                    io::quoted(s), " is not valid UTF-8");
  return nlohmann::json(s).dump();
}

}  // namespace

uint64_t TensorMeta::nbytes() const {
  return static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype);
}

std::vector<size_t> safetensors_file_order(const std::vector<TensorMeta>& tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = dtype_size(tensors[a].dtype);
    const size_t sb = dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });
  return order;
}

void write_safetensors_streaming(const std::string& path, const std::vector<TensorMeta>& tensors,
                                 const std::function<Tensor(size_t)>& produce,
                                 const std::map<std::string, std::string>& metadata) {
  const std::vector<size_t> order = safetensors_file_order(tensors);
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += json_string(path, k, "metadata key") + ":" + json_string(path, v, "metadata value");
    }
    header += "}";
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorMeta& t = tensors[i];
    GRAFT_CHECK(t.name != "__metadata__", path, ": a tensor cannot be named __metadata__");
    GRAFT_CHECK(seen.insert(t.name).second, path, ": tensor name ", io::quoted(t.name),
                " given twice");
    if (header.size() > 1) header += ",";
    header += json_string(path, t.name, "tensor name") + ":{\"dtype\":\"" +
              dtype_safetensors_name(t.dtype) + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ",";
      header += std::to_string(t.shape[d]);
    }
    const uint64_t end = offset + t.nbytes();
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  GRAFT_INPUT_CHECK(header.size() <= kMaxSafetensorsHeader, path, ": header of ", header.size(),
                    " bytes exceeds the 100 MB limit (too many tensors for one file)");

  io::AtomicFile file(path);
  unsigned char len[8];
  for (int b = 0; b < 8; ++b) len[b] = static_cast<unsigned char>(header.size() >> (8 * b));
  file.write(len, 8);
  file.write(header.data(), header.size());
  for (size_t i : order) {
    const TensorMeta& m = tensors[i];
    const Tensor t = produce(i);
    GRAFT_CHECK(t.defined() && t.shape() == m.shape && t.dtype() == m.dtype, path, ": tensor ",
                io::quoted(m.name), " produced as ", t.defined() ? t.str() : "undefined",
                ", expected ", dtype_name(m.dtype), shape_str(m.shape));
    if (t.numel() == 0) continue;
    Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(Device::cpu()).contiguous();
    file.write(host.raw(), host.nbytes());
  }
  file.commit();
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorMeta> metas;
  for (const auto& [name, t] : tensors) {
    GRAFT_CHECK(t.defined(), path, ": tensor ", io::quoted(name), " is undefined");
    metas.push_back({name, t.shape(), t.dtype()});
  }
  write_safetensors_streaming(
      path, metas, [&](size_t i) { return tensors[i].second; }, metadata);
}

}  // namespace graft
