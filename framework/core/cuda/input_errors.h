// Bad input found inside a kernel (an embedding id, a target or a RoPE position out of range).
//
// A kernel cannot throw, and checking on the host would cost a synchronisation per call. So each
// device has one record in mapped pinned host memory: the first kernel that finds a bad value
// stores (code, value, index, limit) there and leaves the offending element alone (it never reads
// out of bounds). The host looks at the record at every point where it waits for the device
// anyway (DeviceBackend::synchronize and every device->host copy) and throws graft::InputError
// naming the kernel, the value, its position and the valid range.
#pragma once

#include <cstdint>

namespace graft::cuda {

enum InputErrorCode : int32_t {
  kNoInputError = 0,
  kBadEmbeddingId = 1,
  kBadTarget = 2,
  kBadPosition = 3,
};

struct InputErrorRecord {
  int32_t code;
  int32_t pad;
  int64_t value;
  int64_t index;
  int64_t limit;
};

// Device-visible pointer to `device`'s record (created on first use).
InputErrorRecord* input_error_record(int device);
// Throws graft::InputError (and clears the record) when a kernel on `device` reported one. Call
// only after the work in question has finished (after a synchronisation).
void check_input_errors(int device);

}  // namespace graft::cuda
