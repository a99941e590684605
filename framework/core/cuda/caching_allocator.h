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
// CUDA-graph pools (framework/core/device_graph.h): begin_capture(device, stream) opens a private
// pool and routes every allocation on that stream to it until end_capture. Released blocks of the
// pool go back to it, never to the general pools, so while the pool lives (its graph replays) no
// allocation outside a capture gets one. A block of a general pool released on the capturing
// stream during the capture joins the pool (the graph's earlier nodes use it); one with other
// streams' uses (record_stream) released during a capture is set aside until release_pool, since
// its events cannot be queried while capturing. While any capture is under way on a device the
// pending list is not collected (cudaEventQuery is illegal during capture), and a failed cudaMalloc
// is not retried after freeing the cache (that would synchronise the device); the cudaMalloc of a
// pool's new block runs in relaxed capture mode (the graph keeps the block: safe). release_pool(id)
// (the graph is gone and its replays done) returns the pool's free blocks to the general pool of
// their stream; its live blocks go there when released.
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

  // CUDA-graph private pools (see above). begin_capture returns the pool's id (> 0).
  int begin_capture(int device, cudaStream_t stream);
  void end_capture(int pool);
  void release_pool(int pool);

 private:
  struct Block {
    size_t size;
    int device;
    cudaStream_t stream;
    std::vector<cudaStream_t> used_on;  // other streams (record_stream)
    int pool = 0;                       // 0: the general pools; else a CUDA-graph pool
  };
  struct Pending {
    void* ptr;
    Block block;
    std::vector<cudaEvent_t> events;
  };
  struct PoolKey {
    int device;
    cudaStream_t stream;
    int pool = 0;
    bool operator<(const PoolKey& o) const {
      if (device != o.device) return device < o.device;
      if (stream != o.stream) return stream < o.stream;
      return pool < o.pool;
    }
  };
  struct Capture {
    int device;
    cudaStream_t stream;
    int pool;
  };
  struct Stats {
    size_t current = 0, peak = 0, cached = 0, mallocs = 0;
  };

  void free_cached_locked(int device);
  void collect_pending_locked(int device, bool wait);
  void pend_locked(void* ptr, const Block& b);  // events on b.used_on, then the pending list
  int capture_pool_locked(int device, cudaStream_t stream) const;  // 0 when not capturing
  bool capturing_locked(int device) const;
  Stats& stats(int device) { return stats_[device]; }

  std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<PoolKey, std::multimap<size_t, void*>> pools_;
  std::map<int, Stats> stats_;
  std::vector<Pending> pending_;
  std::vector<Capture> captures_;                                // under way
  std::map<int, std::vector<std::pair<void*, Block>>> retired_;  // pool -> set-aside blocks
  int next_pool_ = 1;
};

}  // namespace graft::cuda
