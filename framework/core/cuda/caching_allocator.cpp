#include "framework/core/cuda/caching_allocator.h"

#include "framework/core/cuda/cuda_check.h"

namespace graft::cuda {

namespace {
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t{2} << 20;
constexpr size_t kSmallLimit = size_t{1} << 20;

// cudaMalloc is one of the calls a capture in thread-local mode prohibits ("potentially unsafe":
// it is not captured). Here it is safe: the block belongs to the graph's pool, is never freed
// while the graph lives, and replays use the same address. So it runs in relaxed mode (as
// PyTorch's allocator does), the thread's mode restored after.
cudaError_t malloc_while_capturing(void** ptr, size_t size) {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  GRAFT_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  const cudaError_t e = cudaMalloc(ptr, size);
  GRAFT_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  return e;
}
}  // namespace

CachingAllocator& CachingAllocator::instance() {
  // Leaked on purpose: tensors released during static destruction still find the allocator.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes < kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

int CachingAllocator::capture_pool_locked(int device, cudaStream_t stream) const {
  for (const Capture& c : captures_)
    if (c.device == device && c.stream == stream) return c.pool;
  return 0;
}

bool CachingAllocator::capturing_locked(int device) const {
  for (const Capture& c : captures_)
    if (c.device == device) return true;
  return false;
}

void* CachingAllocator::allocate(size_t bytes, int device, cudaStream_t stream) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  const int graph_pool = capture_pool_locked(device, stream);
  const bool capturing = capturing_locked(device);
  if (!pending_.empty() && !capturing) {
    // A capture graft did not start (another library's) makes cudaEventQuery illegal too.
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    GRAFT_CUDA_CHECK(cudaStreamIsCapturing(stream, &cs));
    if (cs == cudaStreamCaptureStatusNone) collect_pending_locked(device, /*wait=*/false);
  }
  Stats& st = stats(device);
  auto& pool = pools_[PoolKey{device, stream, graph_pool}];
  void* ptr = nullptr;
  auto it = pool.lower_bound(size);
  if (it != pool.end() && it->first - size <= it->first / 4) {
    ptr = it->second;
    st.cached -= it->first;
    live_[ptr] = Block{it->first, device, stream, {}, graph_pool};
    pool.erase(it);
  } else {
    DeviceGuard g(device);
    cudaError_t e = capturing ? malloc_while_capturing(&ptr, size) : cudaMalloc(&ptr, size);
    if (e != cudaSuccess && !capturing) {  // freeing the cache synchronises: not while capturing
      cudaGetLastError();
      collect_pending_locked(device, /*wait=*/true);
      free_cached_locked(device);
      e = cudaMalloc(&ptr, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      GRAFT_CHECK(false, "CUDA out of memory on cuda:", device, ": requested ", bytes,
                  " bytes; graft holds ", st.current, " bytes in use, device has ", free_b, " of ",
                  total_b, " bytes free", capturing ? " (during a CUDA graph capture)" : "");
    }
    ++st.mallocs;
    live_[ptr] = Block{size, device, stream, {}, graph_pool};
  }
  st.current += live_[ptr].size;
  if (st.current > st.peak) st.peak = st.current;
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  GRAFT_CHECK(it != live_.end(), "release of a pointer the CUDA allocator did not hand out");
  Block b = it->second;
  live_.erase(it);
  Stats& st = stats(b.device);
  st.current -= b.size;
  st.cached += b.size;
  if (b.pool == 0) b.pool = capture_pool_locked(b.device, b.stream);  // the graph may use it
  if (b.used_on.empty()) {
    pools_[PoolKey{b.device, b.stream, b.pool}].emplace(b.size, ptr);
    return;
  }
  if (capturing_locked(b.device)) {  // no events while capturing: set aside until release_pool
    int owner = b.pool;
    if (owner == 0)
      for (const Capture& c : captures_)
        if (c.device == b.device) owner = c.pool;
    b.pool = owner;
    retired_[owner].emplace_back(ptr, b);
    return;
  }
  pend_locked(ptr, b);
}

void CachingAllocator::pend_locked(void* ptr, const Block& b) {
  DeviceGuard g(b.device);
  Pending p{ptr, b, {}};
  for (cudaStream_t s : b.used_on) {
    cudaEvent_t ev;
    GRAFT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    GRAFT_CUDA_CHECK(cudaEventRecord(ev, s));
    p.events.push_back(ev);
  }
  pending_.push_back(std::move(p));
}

void CachingAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  GRAFT_CHECK(it != live_.end(), "record_stream of a pointer the CUDA allocator did not hand out");
  Block& b = it->second;
  if (stream == b.stream) return;
  for (cudaStream_t s : b.used_on)
    if (s == stream) return;
  b.used_on.push_back(stream);
}

void CachingAllocator::collect_pending_locked(int device, bool wait) {
  for (size_t i = 0; i < pending_.size();) {
    Pending& p = pending_[i];
    bool done = true;
    if (p.block.device == device) {
      for (cudaEvent_t ev : p.events) {
        if (wait) GRAFT_CUDA_CHECK(cudaEventSynchronize(ev));
        const cudaError_t e = cudaEventQuery(ev);
        if (e == cudaErrorNotReady) {
          done = false;
          break;
        }
        GRAFT_CUDA_CHECK(e);
      }
    } else {
      done = false;
    }
    if (!done) {
      ++i;
      continue;
    }
    for (cudaEvent_t ev : p.events) cudaEventDestroy(ev);
    pools_[PoolKey{p.block.device, p.block.stream, p.block.pool}].emplace(p.block.size, p.ptr);
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }
}

size_t CachingAllocator::pending_blocks(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& p : pending_) n += p.block.device == device;
  return n;
}

void CachingAllocator::free_cached_locked(int device) {
  DeviceGuard g(device);
  // Blocks may still be in use by queued kernels of their stream: wait for the device first.
  GRAFT_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [key, pool] : pools_) {
    if (key.device != device || key.pool != 0) continue;  // a graph's pool stays its own
    for (auto& [size, p] : pool) {
      GRAFT_CUDA_CHECK(cudaFree(p));
      stats(device).cached -= size;
    }
    pool.clear();
  }
}

void CachingAllocator::empty_cache(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked(device);
}

int CachingAllocator::begin_capture(int device, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  GRAFT_CHECK(capture_pool_locked(device, stream) == 0,
              "CachingAllocator::begin_capture: cuda:", device, " stream ",
              static_cast<void*>(stream), " is already capturing");
  const int pool = next_pool_++;
  captures_.push_back(Capture{device, stream, pool});
  return pool;
}

void CachingAllocator::end_capture(int pool) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < captures_.size(); ++i)
    if (captures_[i].pool == pool) {
      captures_.erase(captures_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
}

void CachingAllocator::release_pool(int pool) {
  std::lock_guard<std::mutex> lock(mu_);
  GRAFT_CHECK(pool > 0, "CachingAllocator::release_pool: pool ", pool);
  for (const Capture& c : captures_)
    GRAFT_CHECK(c.pool != pool, "CachingAllocator::release_pool: pool ", pool,
                " is still capturing");
  for (auto& [key, blocks] : pools_) {
    if (key.pool != pool || blocks.empty()) continue;
    auto& general = pools_[PoolKey{key.device, key.stream, 0}];
    for (auto& [size, p] : blocks) general.emplace(size, p);
    blocks.clear();
  }
  for (auto it = pools_.begin(); it != pools_.end();)
    it = it->first.pool == pool ? pools_.erase(it) : std::next(it);
  for (auto& [p, b] : live_)
    if (b.pool == pool) b.pool = 0;
  for (auto& p : pending_)
    if (p.block.pool == pool) p.block.pool = 0;
  auto r = retired_.find(pool);
  if (r != retired_.end()) {
    std::vector<std::pair<void*, Block>> blocks = std::move(r->second);
    retired_.erase(r);
    for (auto& [p, b] : blocks) {
      b.pool = 0;
      pend_locked(p, b);  // now the other streams' events can be recorded and queried
    }
  }
}

size_t CachingAllocator::current_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).current;
}

size_t CachingAllocator::peak_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).peak;
}

size_t CachingAllocator::cached_bytes(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).cached;
}

size_t CachingAllocator::malloc_calls(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return stats(device).mallocs;
}

void CachingAllocator::reset_peak(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  stats(device).peak = stats(device).current;
}

}  // namespace graft::cuda
