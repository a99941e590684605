// The NCCL process group at world size 1 on CUDA tensors (GPU machines; skipped elsewhere):
// every operation through the communication stream and the event chain back to the caller's
// stream, then checked on the host.
#include <gtest/gtest.h>

#include "parallel/comm_backend.h"
#include "parallel/launch.h"
#include "parallel/process_group.h"

namespace graft {
namespace {

// A fresh communicator per test (none outlives main, where the CUDA runtime tears down).
std::shared_ptr<ProcessGroup> nccl_world() {
  return find_comm_backend("nccl")->make_world(world_info(), Device::cuda(0));
}

#define REQUIRE_NCCL()                                                  \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";              \
  if (!find_comm_backend("nccl")) GTEST_SKIP() << "built without NCCL"; \
  auto g = nccl_world()

Tensor gpu_iota(int64_t n, DType dtype, float offset = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 97) * 0.25f + offset;
  return Tensor::from_vector(v, {n}).to(dtype).to(Device::cuda(0));
}

std::vector<float> host(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::kF32).to_f32_vector();
}

TEST(Nccl, WorldOfOneIdentities) {
  REQUIRE_NCCL();
  EXPECT_EQ(g->backend(), "nccl");
  EXPECT_EQ(g->size(), 1);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16, DType::kF64}) {
    for (int64_t n : {1, 7, 1000003}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg}) {
        Tensor t = gpu_iota(n, dt);
        g->all_reduce(t, op, true)->wait();
        EXPECT_EQ(host(t), host(gpu_iota(n, dt))) << dtype_name(dt) << " " << n;
      }
      Tensor out = Tensor::zeros({n}, dt, Device::cuda(0));
      g->all_gather(gpu_iota(n, dt, 1), out);
      EXPECT_EQ(host(out), host(gpu_iota(n, dt, 1)));
      Tensor shard = Tensor::zeros({n}, dt, Device::cuda(0));
      g->reduce_scatter(gpu_iota(n, dt, 2), shard, ReduceOp::kSum, true)->wait();
      EXPECT_EQ(host(shard), host(gpu_iota(n, dt, 2)));
      Tensor r = Tensor::zeros({n}, dt, Device::cuda(0));
      g->send_recv({{P2POp::Kind::kSend, gpu_iota(n, dt, 3), 0}, {P2POp::Kind::kRecv, r, 0}});
      EXPECT_EQ(host(r), host(gpu_iota(n, dt, 3)));
      Tensor b = gpu_iota(n, dt, 4);
      g->broadcast(b, 0);
      EXPECT_EQ(host(b), host(gpu_iota(n, dt, 4)));
    }
  }
}

TEST(Nccl, IntegersScalarsAndBarrier) {
  REQUIRE_NCCL();
  Tensor t = Tensor::from_vector(std::vector<int64_t>{1ll << 40, -3, 7}, {3}).to(Device::cuda(0));
  g->all_reduce(t, ReduceOp::kSum);
  EXPECT_EQ(t.to(Device::cpu()).item({0}), static_cast<double>(1ll << 40));
  EXPECT_EQ(g->all_reduce_scalar(2.5, ReduceOp::kSum), 2.5);
  g->barrier();
}

TEST(Nccl, ChecksDeviceAndDtype) {
  REQUIRE_NCCL();
  Tensor cpu = Tensor::zeros({4}, DType::kF32);
  EXPECT_THROW(g->all_reduce(cpu, ReduceOp::kSum), Error);
  Tensor fp8 = Tensor::zeros({4}, DType::kF8E4M3, Device::cuda(0));
  EXPECT_THROW(g->all_reduce(fp8, ReduceOp::kSum), Error);
}

TEST(Nccl, ManyAsyncOpsInFlight) {
  REQUIRE_NCCL();
  // 64 outstanding collectives on one buffer each, waited in reverse order.
  std::vector<Tensor> ts;
  std::vector<std::unique_ptr<Work>> works;
  for (int i = 0; i < 64; ++i) {
    ts.push_back(gpu_iota(4096, DType::kF32, static_cast<float>(i)));
    works.push_back(g->all_reduce(ts.back(), ReduceOp::kSum, true));
  }
  for (int i = 63; i >= 0; --i) works[i]->wait();
  for (int i = 0; i < 64; ++i) EXPECT_EQ(host(ts[i]), host(gpu_iota(4096, DType::kF32, i)));
}

}  // namespace
}  // namespace graft
