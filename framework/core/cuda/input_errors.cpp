#include "framework/core/cuda/input_errors.h"

#include <atomic>
#include <mutex>
#include <string>

#include "framework/core/cuda/cuda_check.h"

namespace graft::cuda {
namespace {
constexpr int kMaxDevices = 64;
std::atomic<InputErrorRecord*> records[kMaxDevices];
}  // namespace

InputErrorRecord* input_error_record(int device) {
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  InputErrorRecord* r = records[device].load(std::memory_order_acquire);
  if (r) return r;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  r = records[device].load();
  if (!r) {
    void* p = nullptr;
    DeviceGuard g(device);
    // Mapped + portable: one host allocation that kernels on this device write directly (UVA
    // makes the host pointer valid on the device).
    GRAFT_CUDA_CHECK(
        cudaHostAlloc(&p, sizeof(InputErrorRecord), cudaHostAllocMapped | cudaHostAllocPortable));
    r = static_cast<InputErrorRecord*>(p);
    *r = InputErrorRecord{};
    records[device].store(r, std::memory_order_release);
  }
  return r;
}

void check_input_errors(int device) {
  if (device < 0 || device >= kMaxDevices) return;
  InputErrorRecord* r = records[device].load(std::memory_order_acquire);
  if (!r) return;
  volatile InputErrorRecord* v = r;
  const int32_t code = v->code;
  if (code == kNoInputError) return;
  const int64_t value = v->value, index = v->index, limit = v->limit;
  v->code = kNoInputError;
  switch (code) {
    case kBadEmbeddingId:
      throw InputError(str("embedding: token id ", value, " at position ", index,
                           " is outside the vocabulary [0, ", limit, ")"));
    case kBadTarget:
      throw InputError(str("cross_entropy: target ", value, " at row ", index, " is outside [0, ",
                           limit, ") and is not the ignore_index"));
    case kBadPosition:
      throw InputError(
          str("rope: position ", value, " at token ", index, " is outside [0, ", limit, ")"));
    default:
      throw InputError(str("a CUDA kernel reported bad input (code ", code, ")"));
  }
}

}  // namespace graft::cuda
