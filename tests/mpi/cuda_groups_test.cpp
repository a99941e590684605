// CUDA tensors across ranks: the MPI-staged backend (any number of ranks per GPU) and NCCL (one
// GPU per rank). Skipped without a GPU; the decision is the same on every rank.
#include <gtest/gtest.h>

#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

using mpi_test::all_close;
using mpi_test::make_tensor;
using mpi_test::reduce_expected;
using mpi_test::tolerance;
using mpi_test::value;
using mpi_test::values_of;

std::shared_ptr<const ParallelGroups> cuda_groups(const std::string& backend) {
  ParallelConfig c;
  c.backend = backend;
  c.timeout_s = 120;
  const Device dev = bind_local_device(Device::cuda(0), backend == "mpi");
  return make_parallel_groups(c, world_info(), dev, "mpi-test.yaml");
}

// Every operation once on CUDA tensors of `dtype`, compared on the host.
void exercise(ProcessGroup& g, Device dev, DType dtype, int64_t n) {
  const int me = g.rank(), p = g.size();
  auto exact = [](double) { return 0.0; };
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg}) {
    Tensor t = make_tensor(n, dtype, [&](int64_t i) { return value(i, me, dtype); }).to(dev);
    g.all_reduce(t, op, true)->wait();
    EXPECT_TRUE(all_close(
        values_of(t),
        [&](int64_t i) {
          return reduce_expected(op, p, dtype, [&](int r) { return value(i, r, dtype); });
        },
        [&](double w) { return tolerance(op, dtype, w, p); }))
        << "all_reduce " << reduce_op_name(op) << " on " << g.backend();
  }
  Tensor in = make_tensor(n, dtype, [&](int64_t i) { return value(i, me, dtype); }).to(dev);
  Tensor out = Tensor::zeros({n * p}, dtype, dev);
  g.all_gather(in, out);
  EXPECT_TRUE(all_close(
      values_of(out), [&](int64_t j) { return value(j % n, static_cast<int>(j / n), dtype); },
      exact))
      << "all_gather on " << g.backend();
  Tensor big = make_tensor(n * p, dtype, [&](int64_t j) { return value(j, me, dtype); }).to(dev);
  Tensor shard = Tensor::zeros({n}, dtype, dev);
  g.reduce_scatter(big, shard, ReduceOp::kSum);
  EXPECT_TRUE(all_close(
      values_of(shard),
      [&](int64_t i) {
        return reduce_expected(ReduceOp::kSum, p, dtype,
                               [&](int r) { return value(me * n + i, r, dtype); });
      },
      [&](double w) { return tolerance(ReduceOp::kSum, dtype, w, p); }))
      << "reduce_scatter on " << g.backend();
  Tensor b = make_tensor(n, dtype, [&](int64_t i) { return value(i, me, dtype); }).to(dev);
  g.broadcast(b, p - 1);
  EXPECT_TRUE(all_close(
      values_of(b), [&](int64_t i) { return value(i, p - 1, dtype); }, exact));
  const int next = (me + 1) % p, prev = (me + p - 1) % p;
  Tensor s = make_tensor(n, dtype, [&](int64_t i) { return value(i, me, dtype); }).to(dev);
  Tensor rcv = Tensor::zeros({n}, dtype, dev);
  g.send_recv({{P2POp::Kind::kSend, s, next}, {P2POp::Kind::kRecv, rcv, prev}});
  EXPECT_TRUE(all_close(
      values_of(rcv), [&](int64_t i) { return value(i, prev, dtype); }, exact))
      << "send_recv on " << g.backend();
  EXPECT_EQ(g.all_reduce_scalar(me, ReduceOp::kSum), p * (p - 1) / 2.0);
  g.barrier();
}

TEST(MpiCuda, StagedBackendMovesCudaTensors) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto g = cuda_groups("mpi");
  EXPECT_EQ(g->world->backend(), "mpi-staged");
  const Device dev = Device::cuda(world_info().local_rank % device_backend().device_count());
  for (DType dt : {DType::kF32, DType::kBF16}) {
    exercise(*g->world, dev, dt, 7);
    exercise(*g->world, dev, dt, 1000003);
  }
}

TEST(MpiCuda, NcclBetweenGpus) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (world_info().local_size > device_backend().device_count())
    GTEST_SKIP() << "NCCL needs one GPU per rank (" << world_info().local_size << " ranks, "
                 << device_backend().device_count() << " GPUs)";
  auto g = cuda_groups("auto");
  EXPECT_EQ(g->world->backend(), "nccl");
  const Device dev = Device::cuda(world_info().local_rank);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kI64}) {
    exercise(*g->world, dev, dt, 7);
    exercise(*g->world, dev, dt, 1000003);
  }
}

}  // namespace
}  // namespace graft
