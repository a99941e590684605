// Stream-ordered caching allocator for device memory.
//
// Blocks are rounded up (512 B granules below 1 MiB, 2 MiB granules above) and, when released,
// kept in a free pool of the (device, stream) they were allocated on. A later request on the same
// stream reuses the smallest cached block that fits without wasting more than a quarter of it;
// stream order guarantees the previous user's kernels ran before the new user's. A block used
// on another stream must be synchronised by its user (as with PyTorch's record_stream). When
// cudaMalloc fails, the pool of that device is returned to the driver and the call retried once.
//
// Accounting: current_bytes = rounded bytes handed out and not yet released; peak_bytes = the
// largest current_bytes since the last reset_peak; cached_bytes = bytes held in the free pools.
// In steady state (same shapes each step) every request is served from the pool: cudaMalloc
// is called only while the pool warms up (malloc_calls() counts them, for tests).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>

namespace graft::cuda {

class CachingAllocator {
 public:
  static CachingAllocator& instance();

  void* allocate(size_t bytes, int device, cudaStream_t stream);
  void release(void* ptr);
  // Returns every cached (free) block of `device` to the driver.
  void empty_cache(int device);

  size_t current_bytes(int device);
  size_t peak_bytes(int device);
  size_t cached_bytes(int device);
  size_t malloc_calls(int device);
  void reset_peak(int device);

  static size_t round_size(size_t bytes);

 private:
  struct Block {
    size_t size;
    int device;
    cudaStream_t stream;
  };
  struct PoolKey {
    int device;
    cudaStream_t stream;
    bool operator<(const PoolKey& o) const {
      return device != o.device ? device < o.device : stream < o.stream;
    }
  };
  struct Stats {
    size_t current = 0, peak = 0, cached = 0, mallocs = 0;
  };

  void free_cached_locked(int device);
  Stats& stats(int device) { return stats_[device]; }

  std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<PoolKey, std::multimap<size_t, void*>> pools_;
  std::map<int, Stats> stats_;
};

}  // namespace graft::cuda
