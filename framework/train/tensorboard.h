// TensorBoard event files (logging.tensorboard: DIR), written without TensorFlow.
//
// DIR/events.out.tfevents.<unix seconds>.<host>.<pid> is a TFRecord file: each record is
//   u64 length, u32 masked CRC-32C of the length bytes, the bytes, u32 masked CRC-32C of them
// (little-endian; framework/io/crc32c.h), and each record's bytes are one Event protobuf
// (framework/train/tensorboard/event.proto, a field-compatible subset of TensorFlow's, compiled by
// protoc from CMake). The first event holds file_version "brain.Event:2"; then one event per
// logged step with a Summary of simple_value scalars. A resumed run starts a new file in the same
// folder; TensorBoard merges them. Flushed after every event.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace graft {

// False when graft was built without protobuf (then logging.tensorboard is rejected).
bool tensorboard_available();

class TensorBoardWriter {
 public:
  // Creates `dir` and the event file. InputError naming the file when it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  // One event at `step` with these scalars (tag, value); non-finite values are written as is.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& bytes);
  std::string path_;
  std::ofstream file_;
};

}  // namespace graft
