// Atomic file replacement: bytes go to a temporary file in the destination's folder; commit()
// fsyncs it, renames it over the destination and fsyncs the folder, so readers see either the
// old file or the complete new one. Destroyed without commit(), the temporary file is removed.
#pragma once

#include <cstddef>
#include <string>

namespace graft::io {

class AtomicFile {
 public:
  // Creates the temporary file. Throws InputError naming `path` (e.g. the folder is missing or
  // not writable).
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);  // retries short writes and EINTR
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what);
  std::string path_, tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);

// fsyncs a folder so that renames into it are durable. InputError naming it on failure.
void fsync_dir(const std::string& dir);

}  // namespace graft::io
