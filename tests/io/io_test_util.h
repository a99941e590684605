// Helpers for the I/O tests: temporary folders, crafted safetensors bytes, the catalogue of bad
// files and bad checkpoint folders (shared by the library tests and the `graft inspect` tests).
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace graft::testing {

// A fresh folder under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);

// A whole safetensors file: 8-byte little-endian length of `header`, `header`, `data_bytes`
// zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes);
std::string safetensors_bytes_with_length(uint64_t header_length, const std::string& rest);

// A file that every reader must reject, with text its error must contain (the rule, and the
// tensor's name when the rule concerns one tensor).
struct BadFile {
  std::string label;   // test name: letters, digits and '_'
  std::string bytes;   // the whole file
  std::string expect;  // substring of the error message
};
std::vector<BadFile> bad_safetensors_files();
inline void PrintTo(const BadFile& b, std::ostream* os) { *os << b.label; }

// A checkpoint folder that ShardedCheckpoint::open, or validate(), must reject.
struct BadCheckpoint {
  std::string label;
  std::function<void(const std::string& dir)> make;  // fills an empty folder
  std::string expect;
  bool caught_by_open;  // true: open() rejects it; false: only open_shard()/validate() do
};
std::vector<BadCheckpoint> bad_checkpoints();
inline void PrintTo(const BadCheckpoint& b, std::ostream* os) { *os << b.label; }

std::string fixtures_dir();  // tests/fixtures/hf in the source tree

}  // namespace graft::testing
