#include "framework/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "framework/core/error.h"

namespace graft::io {
namespace {

std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::string base = std::filesystem::path(path_).filename().string();
  GRAFT_INPUT_CHECK(!base.empty(), path_, ": not a file name");
  std::string tmpl = parent_dir(path_) + "/." + base + ".tmpXXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0)
    throw InputError(
        str(path_, ": cannot create a temporary file beside it: ", std::strerror(errno)));
  tmp_path_ = buf.data();
  ::fchmod(fd_, 0644);  // mkstemp creates 0600; checkpoints are meant to be shared
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  throw InputError(str(path_, ": ", what, ": ", std::strerror(errno)));
}

void AtomicFile::write(const void* data, size_t bytes) {
  GRAFT_CHECK(fd_ >= 0 && !committed_, "AtomicFile::write after commit");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  GRAFT_CHECK(fd_ >= 0 && !committed_, "AtomicFile::commit twice");
  if (::fsync(fd_) != 0) fail("fsync failed");
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close failed");
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) fail("rename failed");
  committed_ = true;
  fsync_dir(parent_dir(path_));
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  GRAFT_INPUT_CHECK(fd >= 0, dir, ": cannot open the folder to fsync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  GRAFT_INPUT_CHECK(rc == 0, dir, ": fsync of the folder failed: ", std::strerror(err));
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace graft::io
