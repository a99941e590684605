// Stream-ordered caching allocator for device memory.
//
// Blocks are rounded up (512 B granules below 1 MiB, 2 MiB granules above) and, when released,
// kept in a free pool of the (device, stream) they were allocated on. A later request on the same
// stream reuses the smallest cached block that fits without wasting more than a quarter of it;
// stream order guarantees the previous user's kernels ran before the new user's.
//
// Cross-stream safety: a block that other streams use (a communication stream reducing a
// gradient bucket) is declared with record_stream(ptr, other). When such a block is released, an
// event is recorded on each of those streams and the block waits in a pending list; it returns
// to its pool only once every event has completed (checked, without blocking, at the next
// allocate of that device). So a block freed on one stream is never reused while another stream
// may still read or write it. When cudaMalloc fails, pending blocks are waited for, the pool of
// that device is returned to the driver and the call retried once.
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
#include <vector>

namespace graft::cuda {

class CachingAllocator {
 public:
  static CachingAllocator& instance();

  void* allocate(size_t bytes, int device, cudaStream_t stream);
  void release(void* ptr);
  // `ptr` (a live block) is also used by work queued on `stream`.
  void record_stream(void* ptr, cudaStream_t stream);
  size_t pending_blocks(int device);  // released blocks waiting for other streams (tests)
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
    std::vector<cudaStream_t> used_on;  // other streams (record_stream)
  };
  struct Pending {
    void* ptr;
    Block block;
    std::vector<cudaEvent_t> events;
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
  void collect_pending_locked(int device, bool wait);
  Stats& stats(int device) { return stats_[device]; }

  std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<PoolKey, std::multimap<size_t, void*>> pools_;
  std::map<int, Stats> stats_;
  std::vector<Pending> pending_;
};

}  // namespace graft::cuda
