// safetensors reader: header validation (the rules of the reference Rust implementation, plus
// duplicate keys, unknown tensor fields and non-string metadata rejected) and the mmap'd file.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>

#include "framework/io/safetensors.h"
#include "framework/io/strict_json.h"

namespace graft {
namespace {

using Json = nlohmann::ordered_json;

// A valid header nests three levels: {tensor: {shape: [...]}}.
constexpr int kHeaderMaxDepth = 3;

[[noreturn]] void fail(const std::string& file, const std::string& msg) {
  throw SafetensorsError(str(file, ": ", msg));
}
[[noreturn]] void fail_tensor(const std::string& file, const std::string& name,
                              const std::string& msg) {
  throw SafetensorsError(str(file, ": tensor ", io::quoted(name), ": ", msg));
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

const char* json_type(const Json& j) {
  if (j.is_number_unsigned()) return "a non-negative integer";
  if (j.is_number_integer()) return "a negative integer";
  return j.type_name();
}

TensorInfo parse_tensor_entry(const std::string& file, const std::string& name, const Json& e) {
  if (!e.is_object()) {
    fail_tensor(
        file, name,
        str("entry must be an object with dtype, shape and data_offsets, got ", json_type(e)));
  }
  for (const auto& [key, _] : e.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail_tensor(file, name,
                  str("unknown field ", io::quoted(key), " (expected dtype, shape, data_offsets)"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) fail_tensor(file, name, str("missing field \"", key, "\""));
  }
  TensorInfo t;
  t.name = name;
  const Json& dt = e["dtype"];
  if (!dt.is_string()) fail_tensor(file, name, str("dtype must be a string, got ", json_type(dt)));
  auto dtype = dtype_from_safetensors(dt.get_ref<const std::string&>());
  if (!dtype) fail_tensor(file, name, str("unknown dtype ", io::quoted(dt.get<std::string>())));
  t.dtype = *dtype;

  const Json& shape = e["shape"];
  if (!shape.is_array())
    fail_tensor(file, name, str("shape must be an array, got ", json_type(shape)));
  uint64_t numel = 1;
  bool overflow = false;
  for (const Json& d : shape) {
    if (!d.is_number_unsigned()) {
      fail_tensor(file, name, str("shape entries must be non-negative integers, got ", d.dump()));
    }
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_tensor(file, name, str("shape entry ", v, " does not fit in int64"));
    }
    t.shape.push_back(static_cast<int64_t>(v));
    overflow = overflow || __builtin_mul_overflow(numel, v, &numel);
  }
  uint64_t nbytes = 0;
  if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes)) {
    fail_tensor(file, name, str("size of shape ", shape.dump(), " overflows 64 bits"));
  }

  const Json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned()) {
    fail_tensor(
        file, name,
        str("data_offsets must be two non-negative integers [begin, end], got ", off.dump()));
  }
  t.begin = off[0].get<uint64_t>();
  t.end = off[1].get<uint64_t>();
  if (t.end < t.begin) {
    fail_tensor(file, name, str("data_offsets [", t.begin, ", ", t.end, "] end before they begin"));
  }
  if (t.end - t.begin != nbytes) {
    fail_tensor(
        file, name,
        str("data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin, " bytes but ",
            dt.get<std::string>(), " shape ", shape.dump(), " needs ", nbytes));
  }
  return t;
}

// Tensors sorted by offset must tile the data section exactly: first at 0, each beginning where
// the previous ends (no gap, no overlap), the last ending at the end of the file.
void check_layout(const std::string& file, const std::vector<TensorInfo>& tensors,
                  uint64_t data_size) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(tensors[a].begin, tensors[a].end) <
           std::pair(tensors[b].begin, tensors[b].end);
  });
  uint64_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (size_t i : order) {
    const TensorInfo& t = tensors[i];
    if (t.begin < expected) {
      fail_tensor(file, t.name,
                  str("data_offsets [", t.begin, ", ", t.end, "] overlap tensor ",
                      io::quoted(prev->name), " which ends at ", expected));
    }
    if (t.begin > expected) {
      fail_tensor(file, t.name,
                  prev ? str("data_offsets [", t.begin, ", ", t.end, "] leave a gap after tensor ",
                             io::quoted(prev->name), " which ends at ", expected)
                       : str("data_offsets [", t.begin, ", ", t.end,
                             "]: the first tensor must begin at offset 0"));
    }
    expected = t.end;
    prev = &t;
  }
  if (expected > data_size) {
    fail_tensor(file, prev->name,
                str("data_offsets end at ", expected, " but the data section holds only ",
                    data_size, " bytes (file truncated?)"));
  }
  if (expected < data_size) {
    fail(file, str("data section holds ", data_size, " bytes but the tensors end at ", expected,
                   " (", data_size - expected, " trailing bytes)"));
  }
}

}  // namespace

std::vector<TensorInfo> parse_safetensors_header(const char* json, size_t size, uint64_t data_size,
                                                 const std::string& file,
                                                 std::map<std::string, std::string>* metadata) {
  if (size == 0 || json[0] != '{') fail(file, "header must be a JSON object starting with '{'");
  Json root;
  if (auto err = io::parse_strict_json(json, size, kHeaderMaxDepth, &root)) {
    fail(file, "header: " + *err);
  }
  if (!root.is_object()) fail(file, "header must be a JSON object");
  std::vector<TensorInfo> tensors;
  tensors.reserve(root.size());
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        fail(file, str("__metadata__ must be an object of string values, got ", json_type(entry)));
      }
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) {
          fail(file, str("__metadata__ value of ", io::quoted(k), " must be a string, got ",
                         json_type(v)));
        }
        if (metadata) (*metadata)[k] = v.get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_tensor_entry(file, name, entry));
  }
  check_layout(file, tensors, data_size);
  return tensors;
}

SafetensorsLayout parse_safetensors_buffer(const void* data, size_t size, const std::string& file) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (size < 8) {
    fail(file, str("file is ", size, " bytes, too short for the 8-byte header length"));
  }
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxSafetensorsHeader) {
    fail(file, str("header length ", n, " exceeds the 100 MB limit"));
  }
  if (n > size - 8) {
    fail(file, str("header length ", n, " exceeds the ", size - 8,
                   " bytes that follow the length prefix (file truncated?)"));
  }
  SafetensorsLayout layout;
  layout.data_start = 8 + n;
  layout.tensors = parse_safetensors_header(reinterpret_cast<const char*>(bytes + 8), n,
                                            size - 8 - n, file, &layout.metadata);
  return layout;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  // O_NONBLOCK: opening a FIFO must not hang; it is then rejected as not a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, str("cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    fail(path, str("file is ", f->size_, " bytes, too short for the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail(path, str("cannot mmap: ", std::strerror(map_errno)));
  f->map_ = map;  // from here the destructor unmaps, also when validation throws
  SafetensorsLayout layout = parse_safetensors_buffer(map, f->size_, path);
  f->tensors_ = std::move(layout.tensors);
  f->metadata_ = std::move(layout.metadata);
  f->data_start_ = layout.data_start;
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

uint64_t SafetensorsFile::resident_bytes() const {
  std::ifstream f("/proc/self/smaps");
  GRAFT_CHECK(f.good(), path_, ": cannot read /proc/self/smaps to measure the mapped bytes");
  const auto want = reinterpret_cast<uintptr_t>(map_);
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    // A mapping's first line: "start-end perms offset dev inode path"; then "Key: value kB".
    const size_t dash = line.find('-'), space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space &&
        line.find(':') > space) {
      inside = std::strtoull(line.c_str(), nullptr, 16) == want;
      continue;
    }
    if (inside && line.rfind("Rss:", 0) == 0)
      return std::strtoull(line.c_str() + 4, nullptr, 10) * 1024;
  }
  GRAFT_CHECK(false, path_, ": mapping not found in /proc/self/smaps");
  return 0;
}

void SafetensorsFile::release_pages(const TensorInfo& t) const {
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = (data_start_ + t.begin) / page * page;
  const uint64_t end = std::min<uint64_t>((data_start_ + t.end + page - 1) / page * page, size_);
  if (end > begin) ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, str("no tensor named ", io::quoted(name)));
  char* ptr = static_cast<char*>(map_) + data_start_ + t->begin;
  if (reinterpret_cast<uintptr_t>(ptr) % dtype_size(t->dtype) != 0) {
    Tensor copy = Tensor::empty(t->shape, t->dtype);
    if (t->end > t->begin) std::memcpy(copy.raw(), ptr, t->end - t->begin);
    return copy;
  }
  auto self = shared_from_this();
  return Tensor::from_blob(ptr, t->shape, t->dtype, Device::cpu(), [self] {});
}

}  // namespace graft
