// safetensors: a memory-mapped, strictly validated reader and an atomic writer.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data. Offsets are relative to the end of the header.
//
// Every validation failure throws SafetensorsError (an InputError) naming the file, the tensor
// when there is one, and the rule broken.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"

namespace graft {

class SafetensorsError : public InputError {
 public:
  using InputError::InputError;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the data section
};

// Parses and validates a header (the JSON bytes) against a data section of `data_size` bytes.
// Exposed for the fuzzer and tests; `file` only labels errors.
std::vector<TensorInfo> parse_safetensors_header(const char* json, size_t size, uint64_t data_size,
                                                 const std::string& file,
                                                 std::map<std::string, std::string>* metadata);

// A whole file held in memory (the 8-byte length, the header, the data), validated exactly as
// SafetensorsFile::open validates a file: the length prefix exists, the header length is at most
// 100 MB (kMaxSafetensorsHeader) and fits in the buffer, and the tensors cover the data section.
struct SafetensorsLayout {
  std::vector<TensorInfo> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length
};
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;
SafetensorsLayout parse_safetensors_buffer(const void* data, size_t size, const std::string& file);

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in header order
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return size_; }
  // Bytes of the mapping present in this process's page tables, as the kernel counts them
  // (the Rss of the mapping in /proc/self/smaps): the pages read so far, rounded out by the
  // kernel's fault-around (up to 64 KiB around each fault on Linux). A fresh mapping holds none.
  // Pages of the file in the page cache but never touched here do not count. Error when
  // /proc/self/smaps cannot be read or lacks the mapping.
  uint64_t resident_bytes() const;
  // Drops the pages holding `t`'s bytes from this process's mapping (madvise MADV_DONTNEED; the
  // page cache keeps them): a reader done with a tensor releases it, so the mapping holds one
  // tensor's pages at a time. Views stay valid (a later access faults the page back in).
  void release_pages(const TensorInfo& t) const;

  // Zero-copy CPU view of a tensor; keeps the mapping alive while any view exists. The mapping
  // is read-only: clone() a view before writing to it. (A tensor whose bytes are not aligned to
  // its element size, possible only in files not padded like the reference writer's, is copied.)
  // Throws SafetensorsError when the file has no tensor of that name.
  Tensor tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Writes CPU tensors (any strides; written contiguous) atomically: temp file in the same folder,
// fsync, rename, fsync of the folder. Names must be unique. Layout follows the reference writer:
// tensors ordered by element size (largest first), then by name, so each stays aligned to its
// element size; the header is padded with spaces to a multiple of 8. An I/O failure (say, an
// unwritable folder) throws InputError naming the path; no partial file is left behind.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// What a file's header says of a tensor.
struct TensorMeta {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  uint64_t nbytes() const;
};

// The order write_safetensors stores `tensors` in (element size, largest first, then name):
// indices into `tensors`.
std::vector<size_t> safetensors_file_order(const std::vector<TensorMeta>& tensors);

// Streaming form: the header from `tensors`, then each tensor's data from produce(i), called once
// per tensor in safetensors_file_order and written before the next is asked for, so one tensor
// is held at a time. produce must return a CPU or device tensor of exactly that shape and dtype.
void write_safetensors_streaming(const std::string& path, const std::vector<TensorMeta>& tensors,
                                 const std::function<Tensor(size_t)>& produce,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace graft
