// The CUDA DeviceBackend: caching allocator reuse and accounting, copies, memset, pinned memory.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/tensor.h"
#include "tests/cuda/cuda_test_util.h"

#ifdef GRAFT_HAVE_CUDA
#include "framework/core/cuda/caching_allocator.h"
#endif

namespace graft {
namespace {

using cuda_test::gpu;

// Returns cached blocks to the driver so that blocks cached by earlier tests cannot satisfy
// this test's requests (the CUDA build only; the CPU-only build skips every test anyway).
void fresh_pool() {
#ifdef GRAFT_HAVE_CUDA
  cuda::CachingAllocator::instance().empty_cache(0);
#endif
}

TEST(CudaAllocator, ReusesReleasedBlockOfSameSize) {
  GRAFT_REQUIRE_CUDA();
  DeviceBackend& be = device_backend();
  fresh_pool();
  void* a = be.allocate(3000, gpu());
  be.release(a, 3000, gpu());
  void* b = be.allocate(3000, gpu());
  EXPECT_EQ(a, b) << "a block released on the current stream must be handed out again";
  void* c = be.allocate(3000, gpu());
  EXPECT_NE(b, c) << "a live block must never be handed out twice";
  be.release(b, 3000, gpu());
  be.release(c, 3000, gpu());
}

#ifdef GRAFT_HAVE_CUDA
// A block used by another stream is not handed out again while that stream may still use it.
TEST(CudaAllocator, BlockUsedOnAnotherStreamWaitsForIt) {
  GRAFT_REQUIRE_CUDA();
  DeviceBackend& be = device_backend();
  auto& alloc = cuda::CachingAllocator::instance();
  fresh_pool();
  cudaStream_t comm;
  ASSERT_EQ(cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking), cudaSuccess);
  void* a = be.allocate(1 << 20, gpu());
  alloc.record_stream(a, comm);
  // The comm stream is busy for 300 ms (a host callback that sleeps), standing in for a slow
  // collective reading the block.
  ASSERT_EQ(cudaLaunchHostFunc(
                comm, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); },
                nullptr),
            cudaSuccess);
  be.release(a, 1 << 20, gpu());
  EXPECT_EQ(alloc.pending_blocks(0), 1u);
  void* b = be.allocate(1 << 20, gpu());
  EXPECT_NE(a, b) << "reused while another stream may still use it";
  ASSERT_EQ(cudaStreamSynchronize(comm), cudaSuccess);
  be.release(b, 1 << 20, gpu());
  void* c = be.allocate(1 << 20, gpu());  // the pending block is back in its pool now
  EXPECT_EQ(alloc.pending_blocks(0), 0u);
  void* d = be.allocate(1 << 20, gpu());
  EXPECT_TRUE((c == a || d == a)) << "the block must return to its pool once the stream is done";
  be.release(c, 1 << 20, gpu());
  be.release(d, 1 << 20, gpu());
  cudaStreamDestroy(comm);
}
#endif

TEST(CudaAllocator, CurrentAndPeakAccounting) {
  GRAFT_REQUIRE_CUDA();
  DeviceBackend& be = device_backend();
  be.synchronize(gpu());
  fresh_pool();
  const size_t base = be.current_bytes(gpu());
  be.reset_peak(gpu());
  EXPECT_EQ(be.peak_bytes(gpu()), base);
  const size_t big = size_t{6} << 20;  // a multiple of the 2 MiB granule: counted exactly
  void* a = be.allocate(big, gpu());
  void* b = be.allocate(big, gpu());
  EXPECT_EQ(be.current_bytes(gpu()), base + 2 * big);
  be.release(a, big, gpu());
  EXPECT_EQ(be.current_bytes(gpu()), base + big);
  EXPECT_EQ(be.peak_bytes(gpu()), base + 2 * big);
  be.reset_peak(gpu());
  EXPECT_EQ(be.peak_bytes(gpu()), base + big);
  be.release(b, big, gpu());
  EXPECT_EQ(be.current_bytes(gpu()), base);
  // Small requests are rounded up to 512 B granules.
  void* s = be.allocate(1, gpu());
  EXPECT_EQ(be.current_bytes(gpu()), base + 512);
  be.release(s, 1, gpu());
}

#ifdef GRAFT_HAVE_CUDA
// The steady state of a training step: the same shapes every step allocate nothing new.
TEST(CudaAllocator, SteadyStateCallsNoCudaMalloc) {
  GRAFT_REQUIRE_CUDA();
  auto& alloc = cuda::CachingAllocator::instance();
  size_t mallocs_after_warmup = 0;
  for (int step = 0; step < 4; ++step) {
    if (step == 1) mallocs_after_warmup = alloc.malloc_calls(0);
    std::vector<Tensor> live;
    for (int64_t n : {1000, 70000, 1 << 20, 3 << 20, 1000}) {
      live.push_back(Tensor::empty({n}, DType::kF32, gpu()));
    }
  }
  EXPECT_EQ(alloc.malloc_calls(0), mallocs_after_warmup);
  EXPECT_GT(alloc.cached_bytes(0), size_t{0});
}
#endif

TEST(CudaBackend, CopiesRoundTripAndMemset) {
  GRAFT_REQUIRE_CUDA();
  auto rng = cuda_test::rng_for();
  Tensor h = cuda_test::random_host({71, 229}, rng);
  Tensor d = h.to(gpu());
  Tensor d2 = d.clone();  // device -> device
  EXPECT_EQ(d2.to(Device::cpu()).to_f32_vector(), h.to_f32_vector());
  d2.slice(0, 3, 5).zero_();
  std::vector<float> back = d2.to(Device::cpu()).to_f32_vector();
  for (int64_t i = 0; i < 71 * 229; ++i) {
    const bool zeroed = i >= 3 * 229 && i < 8 * 229;
    ASSERT_EQ(back[i], zeroed ? 0.0f : h.to_f32_vector()[i]) << "element " << i;
  }
}

TEST(CudaBackend, PinnedBuffersAreReusedAndUsable) {
  GRAFT_REQUIRE_CUDA();
  DeviceBackend& be = device_backend();
  void* p = be.allocate_pinned(4096);
  ASSERT_NE(p, nullptr);
  std::vector<float> src(1024);
  for (int i = 0; i < 1024; ++i) src[i] = 0.5f * i - 3.0f;
  std::memcpy(p, src.data(), 4096);
  Tensor d = Tensor::empty({1024}, DType::kF32, gpu());
  be.copy(d.raw(), gpu(), p, Device::cpu(), 4096);
  EXPECT_EQ(d.to(Device::cpu()).to_f32_vector(), src);
  be.release_pinned(p);
  void* q = be.allocate_pinned(4096);
  EXPECT_EQ(p, q);
  be.release_pinned(q);
}

TEST(CudaBackend, UnknownDeviceIsAnInputError) {
  GRAFT_REQUIRE_CUDA();
  EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(999)), InputError);
}

}  // namespace
}  // namespace graft
