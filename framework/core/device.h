// Devices and the backend hooks through which core code reaches a GPU without depending on
// CUDA. The CUDA library (kernels/cuda) registers a DeviceBackend at static-initialisation
// time; a CPU-only build has none and any CUDA request fails with a clear error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace graft {

enum class DeviceType : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::kCUDA, i}; }
  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

// Parses "cpu", "cuda", "cuda:1". Throws InputError naming `what` otherwise.
Device parse_device(const std::string& s, const std::string& what);

// What the core needs from a GPU runtime. All pointers are device pointers unless named host.
struct DeviceBackend {
  virtual ~DeviceBackend() = default;
  virtual int device_count() = 0;
  // Makes `index` the calling thread's current device (cudaSetDevice).
  virtual void set_device(int index) = 0;
  // Stream-ordered caching allocation on the current stream of `device`.
  virtual void* allocate(size_t bytes, Device device) = 0;
  virtual void release(void* ptr, size_t bytes, Device device) = 0;
  // Copies `bytes` between any combination of host and device memory. On return the host buffer
  // may be reused and a device->host result is ready; a host->device copy may still be queued on
  // the current stream (ordered before all later work there).
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) = 0;
  virtual void memset_zero(void* ptr, size_t bytes, Device device) = 0;
  virtual void synchronize(Device device) = 0;
  // Page-locked host memory for fast transfers.
  virtual void* allocate_pinned(size_t bytes) = 0;
  virtual void release_pinned(void* ptr) = 0;
  virtual size_t current_bytes(Device device) = 0;
  virtual size_t peak_bytes(Device device) = 0;
  virtual void reset_peak(Device device) = 0;
};

void register_device_backend(DeviceBackend* backend);
// The registered backend; throws graft::InputError when there is none (CPU-only build) or no GPU.
DeviceBackend& device_backend();
bool cuda_available();

}  // namespace graft
