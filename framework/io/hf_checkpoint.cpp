// Hugging Face checkpoint folders: the shard index (read, validated, written) and sharded export.
#include "framework/io/hf_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include "framework/io/atomic_file.h"
#include "framework/io/strict_json.h"

namespace graft {
namespace {

constexpr size_t kMaxIndexBytes = 100'000'000;
constexpr int kIndexMaxDepth = 8;

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A shard must be a plain file name inside the checkpoint folder.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

ShardedCheckpoint ShardedCheckpoint::open(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    throw InputError(str(dir, ": cannot open checkpoint folder: ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) throw InputError(str(dir, ": not a checkpoint folder"));
  ShardedCheckpoint ck;
  ck.dir_ = dir;
  const std::string index_path = dir + "/" + kHfIndexFile;
  const std::string single_path = dir + "/" + kHfSingleFile;
  if (::stat(index_path.c_str(), &st) == 0) {
    nlohmann::ordered_json index = io::read_json_file(index_path, kMaxIndexBytes, kIndexMaxDepth);
    if (!index.is_object()) throw SafetensorsError(str(index_path, ": must be a JSON object"));
    for (const auto& [key, value] : index.items()) {
      if (key == "metadata") {
        if (!value.is_object()) {
          throw SafetensorsError(str(index_path, ": \"metadata\" must be an object"));
        }
      } else if (key != "weight_map") {
        throw SafetensorsError(str(index_path, ": unknown key ", io::quoted(key),
                                   " (expected \"metadata\" and \"weight_map\")"));
      }
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw SafetensorsError(str(index_path, ": \"weight_map\" must be an object of tensor names"));
    }
    std::set<std::string> shards;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        throw SafetensorsError(str(index_path, ": weight_map[", io::quoted(name),
                                   "] must be a shard file name, got ", shard.dump()));
      }
      const std::string& file = shard.get_ref<const std::string&>();
      if (!plain_file_name(file)) {
        throw SafetensorsError(str(index_path, ": weight_map[", io::quoted(name),
                                   "] = ", io::quoted(file),
                                   " is not a plain file name inside the checkpoint folder"));
      }
      ck.weight_map_[name] = file;  // duplicates were rejected by the strict parser
      ck.shard_tensors_[file].push_back(name);
      shards.insert(file);
    }
    if (shards.empty()) throw SafetensorsError(str(index_path, ": weight_map lists no tensors"));
    for (const std::string& file : shards) {
      if (!is_regular_file(dir + "/" + file)) {
        throw SafetensorsError(str(index_path, ": shard ", io::quoted(file), " (listed for tensor ",
                                   io::quoted(ck.shard_tensors_[file].front()),
                                   ") is missing or not a regular file"));
      }
    }
    ck.shards_.assign(shards.begin(), shards.end());
  } else if (::stat(single_path.c_str(), &st) == 0) {
    auto f = SafetensorsFile::open(single_path);
    for (const TensorInfo& t : f->tensors()) {
      ck.weight_map_[t.name] = kHfSingleFile;
      ck.shard_tensors_[kHfSingleFile].push_back(t.name);
    }
    ck.shards_ = {kHfSingleFile};
    ck.shard_tensors_[kHfSingleFile];  // present even when the file holds no tensors
  } else {
    throw InputError(str(dir, ": no ", kHfIndexFile, " or ", kHfSingleFile, " in this folder"));
  }
  for (auto& [_, names] : ck.shard_tensors_) std::sort(names.begin(), names.end());
  return ck;
}

const std::vector<std::string>& ShardedCheckpoint::shard_tensors(const std::string& shard) const {
  auto it = shard_tensors_.find(shard);
  GRAFT_INPUT_CHECK(it != shard_tensors_.end(), dir_, ": no shard named ", io::quoted(shard));
  return it->second;
}

std::shared_ptr<SafetensorsFile> ShardedCheckpoint::open_shard(const std::string& shard) const {
  const std::vector<std::string>& listed = shard_tensors(shard);
  auto f = SafetensorsFile::open(dir_ + "/" + shard);
  const std::string index_path = dir_ + "/" + kHfIndexFile;
  for (const std::string& name : listed) {
    if (!f->find(name)) {
      throw SafetensorsError(str(index_path, ": lists tensor ", io::quoted(name), " in ",
                                 io::quoted(shard), " but that shard does not hold it"));
    }
  }
  for (const TensorInfo& t : f->tensors()) {
    auto it = weight_map_.find(t.name);
    if (it == weight_map_.end()) {
      throw SafetensorsError(str(f->path(), ": holds tensor ", io::quoted(t.name), " which ",
                                 kHfIndexFile, " does not list"));
    }
    if (it->second != shard) {
      throw SafetensorsError(str(f->path(), ": holds tensor ", io::quoted(t.name), " which ",
                                 kHfIndexFile, " lists in ", io::quoted(it->second)));
    }
  }
  return f;
}

void ShardedCheckpoint::validate() const {
  for (const std::string& shard : shards_) open_shard(shard);
}

void write_hf_shards(const std::string& dir,
                     const std::vector<std::pair<std::string, Tensor>>& tensors,
                     uint64_t max_shard_bytes) {
  std::vector<TensorMeta> metas;
  for (const auto& [name, t] : tensors) metas.push_back({name, t.shape(), t.dtype()});
  write_hf_shards_streaming(
      dir, metas, [&](size_t i) { return tensors[i].second; }, max_shard_bytes);
}

void write_hf_shards_streaming(const std::string& dir, const std::vector<TensorMeta>& tensors,
                               const std::function<Tensor(size_t)>& produce,
                               uint64_t max_shard_bytes, bool write) {
  std::error_code ec;
  if (write) {
    std::filesystem::create_directories(dir, ec);
    if (ec) throw InputError(str(dir, ": cannot create folder: ", ec.message()));
  }
  // Greedy split in the given order (as transformers does): a shard is closed when the next
  // tensor would take it past max_shard_bytes.
  std::vector<std::vector<size_t>> groups(1);
  uint64_t current = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = tensors[i].nbytes();
    if (!groups.back().empty() && current + bytes > max_shard_bytes) {
      groups.emplace_back();
      current = 0;
    }
    groups.back().push_back(i);
    current += bytes;
    total += bytes;
  }
  auto write_group = [&](const std::string& path, const std::vector<size_t>& group) {
    std::vector<TensorMeta> metas;
    for (size_t i : group) metas.push_back(tensors[i]);
    auto from_group = [&](size_t k) { return produce(group[k]); };
    if (!write) {
      for (size_t k : safetensors_file_order(metas)) from_group(k);
      return;
    }
    write_safetensors_streaming(path, metas, from_group, {{"format", "pt"}});
  };
  std::set<std::string> written;
  const std::filesystem::path index_path = std::filesystem::path(dir) / kHfIndexFile;
  if (groups.size() == 1) {
    write_group(dir + "/" + kHfSingleFile, groups[0]);
    written.insert(kHfSingleFile);
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::map<std::string, std::string> sorted;
    char name[64];
    for (size_t i = 0; i < groups.size(); ++i) {
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, groups.size());
      write_group(dir + "/" + name, groups[i]);
      written.insert(name);
      for (size_t t : groups[i]) sorted[tensors[t].name] = name;
    }
    if (!write) return;
    for (const auto& [tensor, shard] : sorted) weight_map[tensor] = shard;
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                    {"weight_map", weight_map}};
    io::write_file_atomic(index_path.string(), index.dump(2) + "\n");
    written.insert(kHfIndexFile);
  }
  if (!write) return;
  // Remove weight files of an earlier export that this one does not overwrite, so the folder
  // never mixes two checkpoints (transformers' save_pretrained does the same).
  static const std::regex kWeightFile(R"(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)");
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string file = e.path().filename().string();
    if (std::regex_match(file, kWeightFile) && !written.count(file)) {
      std::filesystem::remove(e.path(), ec);
    }
  }
}

uint64_t parse_byte_size(const std::string& s, const std::string& what) {
  static const std::regex kSize(R"(([0-9]+)\s*([KMGT]?)(I?)B?)", std::regex::icase);
  std::smatch m;
  auto bad = [&] {
    return InputError(str(what, " = ", io::quoted(s),
                          ": expected a positive byte size such as 1000, 40KB, 5GB or 2MiB"));
  };
  if (!std::regex_match(s, m, kSize)) throw bad();
  const std::string unit = m[2].str(), binary = m[3].str();
  if (!binary.empty() && unit.empty()) throw bad();  // "5iB"
  const uint64_t base = binary.empty() ? 1000 : 1024;
  int power = 0;
  if (!unit.empty()) power = static_cast<int>(std::string("KMGT").find(std::toupper(unit[0]))) + 1;
  uint64_t value = 0;
  for (char c : m[1].str()) {
    if (__builtin_mul_overflow(value, uint64_t{10}, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(c - '0'), &value)) {
      throw bad();
    }
  }
  for (int i = 0; i < power; ++i) {
    if (__builtin_mul_overflow(value, base, &value)) throw bad();
  }
  if (value == 0) throw bad();
  return value;
}

}  // namespace graft
