#include "framework/train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "framework/core/error.h"
#include "framework/io/crc32c.h"
#ifdef GRAFT_HAVE_PROTOBUF
#include "framework/train/tensorboard/event.pb.h"
#endif

namespace graft {

namespace {
double wall_time() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

#ifdef GRAFT_HAVE_PROTOBUF

bool tensorboard_available() { return true; }

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  path_ = str(dir, "/events.out.tfevents.", static_cast<int64_t>(wall_time()), ".", host, ".",
              ::getpid());
  file_.open(path_, std::ios::binary | std::ios::trunc);
  GRAFT_INPUT_CHECK(file_.good(), path_,
                    ": cannot create the TensorBoard event file (logging.tensorboard)");
  tensorboard::Event e;
  e.set_wall_time(wall_time());
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::scalars(int64_t step,
                                const std::vector<std::pair<std::string, double>>& values) {
  tensorboard::Event e;
  e.set_wall_time(wall_time());
  e.set_step(step);
  for (const auto& [tag, v] : values) {
    auto* value = e.mutable_summary()->add_value();
    value->set_tag(tag);
    value->set_simple_value(static_cast<float>(v));
  }
  write_record(e.SerializeAsString());
}

#else

bool tensorboard_available() { return false; }

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  throw InputError(str(dir, ": this graft was built without protobuf: no TensorBoard events"));
}

void TensorBoardWriter::scalars(int64_t, const std::vector<std::pair<std::string, double>>&) {}

#endif

void TensorBoardWriter::write_record(const std::string& bytes) {
  const uint64_t len = bytes.size();
  char head[12];
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  const uint32_t len_crc = io::masked_crc32c(head, 8);
  const uint32_t data_crc = io::masked_crc32c(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) head[8 + i] = static_cast<char>((len_crc >> (8 * i)) & 0xFF);
  char tail[4];
  for (int i = 0; i < 4; ++i) tail[i] = static_cast<char>((data_crc >> (8 * i)) & 0xFF);
  file_.write(head, sizeof head);
  file_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file_.write(tail, sizeof tail);
  file_.flush();
  GRAFT_INPUT_CHECK(file_.good(), path_, ": writing the TensorBoard event file failed");
}

}  // namespace graft
