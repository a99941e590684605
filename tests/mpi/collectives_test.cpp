// Every ProcessGroup operation of the MPI backend over the world (CPU tensors), against
// hand-computed results, for 1, 7 and 1000003 elements and f32, f64, bf16, i64; every reduce
// op; the async variants. Runs at any world size under mpirun.
#include <gtest/gtest.h>

#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

using mpi_test::all_close;
using mpi_test::cpu_groups;
using mpi_test::make_tensor;
using mpi_test::reduce_expected;
using mpi_test::tolerance;
using mpi_test::value;
using mpi_test::values_of;

constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg};

struct Case {
  int64_t n;
  DType dtype;
};

class MpiCollectives : public ::testing::TestWithParam<Case> {
 protected:
  ProcessGroup& g() { return *cpu_groups().world; }
  int64_t n() const { return GetParam().n; }
  DType dtype() const { return GetParam().dtype; }
  int me() { return g().rank(); }
  int size() { return g().size(); }
  // Both modes for every op on small tensors; on the large ones (CI time) async for sum only.
  std::vector<bool> asyncs(ReduceOp op) const {
    if (n() > 1000 && op != ReduceOp::kSum) return {false};
    return {false, true};
  }
};

TEST_P(MpiCollectives, AllReduce) {
  EXPECT_EQ(g().backend(), "mpi");
  for (ReduceOp op : kOps) {
    for (bool async : asyncs(op)) {
      Tensor t = make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); });
      auto work = g().all_reduce(t, op, async);
      work->wait();
      auto want = [&](int64_t i) {
        return reduce_expected(op, size(), dtype(), [&](int r) { return value(i, r, dtype()); });
      };
      EXPECT_TRUE(all_close(values_of(t), want,
                            [&](double w) { return tolerance(op, dtype(), w, size()); }))
          << reduce_op_name(op) << (async ? " async" : "");
    }
  }
}

TEST_P(MpiCollectives, AllGather) {
  for (bool async : {false, true}) {
    Tensor in = make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); });
    Tensor out = Tensor::zeros({n() * size()}, dtype());
    g().all_gather(in, out, async)->wait();
    EXPECT_TRUE(all_close(
        values_of(out),
        [&](int64_t j) { return value(j % n(), static_cast<int>(j / n()), dtype()); },
        [](double) { return 0.0; }))
        << (async ? "async" : "");
  }
}

TEST_P(MpiCollectives, AllGatherInPlace) {
  // The input is this rank's slot of the output (the ZeRO-1 parameter gather).
  Tensor out = Tensor::zeros({n() * size()}, dtype());
  Tensor mine = out.slice(0, me() * n(), n());
  mine.copy_from(make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); }));
  g().all_gather(mine, out);
  EXPECT_TRUE(all_close(
      values_of(out), [&](int64_t j) { return value(j % n(), static_cast<int>(j / n()), dtype()); },
      [](double) { return 0.0; }));
}

TEST_P(MpiCollectives, ReduceScatter) {
  for (ReduceOp op : kOps) {
    for (bool async : asyncs(op)) {
      Tensor in =
          make_tensor(n() * size(), dtype(), [&](int64_t j) { return value(j, me(), dtype()); });
      Tensor out = Tensor::zeros({n()}, dtype());
      g().reduce_scatter(in, out, op, async)->wait();
      auto want = [&](int64_t i) {
        return reduce_expected(op, size(), dtype(),
                               [&](int r) { return value(me() * n() + i, r, dtype()); });
      };
      EXPECT_TRUE(all_close(values_of(out), want,
                            [&](double w) { return tolerance(op, dtype(), w, size()); }))
          << reduce_op_name(op) << (async ? " async" : "");
    }
  }
}

TEST_P(MpiCollectives, ReduceScatterIntoOwnShard) {
  // The output is this rank's shard of the input (the ZeRO-1 gradient reduce-scatter).
  Tensor in =
      make_tensor(n() * size(), dtype(), [&](int64_t j) { return value(j, me(), dtype()); });
  Tensor out = in.slice(0, me() * n(), n());
  g().reduce_scatter(in, out, ReduceOp::kSum);
  auto want = [&](int64_t i) {
    return reduce_expected(ReduceOp::kSum, size(), dtype(),
                           [&](int r) { return value(me() * n() + i, r, dtype()); });
  };
  EXPECT_TRUE(all_close(values_of(out), want,
                        [&](double w) { return tolerance(ReduceOp::kSum, dtype(), w, size()); }));
}

TEST_P(MpiCollectives, Broadcast) {
  const int root = size() - 1;
  Tensor t = make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); });
  g().broadcast(t, root);
  EXPECT_TRUE(all_close(
      values_of(t), [&](int64_t i) { return value(i, root, dtype()); },
      [](double) { return 0.0; }));
}

TEST_P(MpiCollectives, SendRecvRing) {
  for (bool async : {false, true}) {
    const int next = (me() + 1) % size(), prev = (me() + size() - 1) % size();
    // Two messages to the same peer in one batch: they match in batch order.
    Tensor a = make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); });
    Tensor b = make_tensor(n(), dtype(), [&](int64_t i) { return value(i + 5, me(), dtype()); });
    Tensor ra = Tensor::zeros({n()}, dtype()), rb = Tensor::zeros({n()}, dtype());
    std::vector<P2POp> ops = {{P2POp::Kind::kSend, a, next},
                              {P2POp::Kind::kSend, b, next},
                              {P2POp::Kind::kRecv, ra, prev},
                              {P2POp::Kind::kRecv, rb, prev}};
    g().send_recv(ops, async)->wait();
    auto exact = [](double) { return 0.0; };
    EXPECT_TRUE(all_close(
        values_of(ra), [&](int64_t i) { return value(i, prev, dtype()); }, exact));
    EXPECT_TRUE(all_close(
        values_of(rb), [&](int64_t i) { return value(i + 5, prev, dtype()); }, exact));
  }
}

TEST_P(MpiCollectives, AsyncOperationsOverlap) {
  // Three collectives in flight at once, waited in reverse order.
  Tensor t = make_tensor(n(), dtype(), [&](int64_t i) { return value(i, me(), dtype()); });
  Tensor in = make_tensor(n(), dtype(), [&](int64_t i) { return value(i + 1, me(), dtype()); });
  Tensor gathered = Tensor::zeros({n() * size()}, dtype());
  Tensor big =
      make_tensor(n() * size(), dtype(), [&](int64_t j) { return value(j, me(), dtype()); });
  Tensor shard = Tensor::zeros({n()}, dtype());
  auto w1 = g().all_reduce(t, ReduceOp::kMax, true);
  auto w2 = g().all_gather(in, gathered, true);
  auto w3 = g().reduce_scatter(big, shard, ReduceOp::kMax, true);
  w3->wait();
  w2->wait();
  w1->wait();
  auto exact = [](double) { return 0.0; };
  EXPECT_TRUE(all_close(
      values_of(t),
      [&](int64_t i) {
        return reduce_expected(ReduceOp::kMax, size(), dtype(),
                               [&](int r) { return value(i, r, dtype()); });
      },
      exact));
  EXPECT_TRUE(all_close(
      values_of(gathered),
      [&](int64_t j) { return value(j % n() + 1, static_cast<int>(j / n()), dtype()); }, exact));
  EXPECT_TRUE(all_close(
      values_of(shard),
      [&](int64_t i) {
        return reduce_expected(ReduceOp::kMax, size(), dtype(),
                               [&](int r) { return value(me() * n() + i, r, dtype()); });
      },
      exact));
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return "n" + std::to_string(info.param.n) + "_" + dtype_name(info.param.dtype);
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, MpiCollectives,
    ::testing::Values(Case{1, DType::kF32}, Case{7, DType::kF32}, Case{1000003, DType::kF32},
                      Case{1, DType::kF64}, Case{7, DType::kF64}, Case{1000003, DType::kF64},
                      Case{1, DType::kBF16}, Case{7, DType::kBF16}, Case{1000003, DType::kBF16},
                      Case{1, DType::kI64}, Case{7, DType::kI64}, Case{1000003, DType::kI64},
                      Case{7, DType::kF16}, Case{7, DType::kI32}, Case{7, DType::kU8}),
    case_name);

TEST(MpiGroup, Bf16SumsAreRoundedOnceFromF32) {
  // The inputs are multiples of 2^-6 below 2^4: their f32 sum is exact, so the MPI backend's
  // result must be exactly that sum rounded to bf16 (not a sum rounded at every step).
  ProcessGroup& g = *cpu_groups().world;
  for (int64_t n : {7, 1000003}) {
    Tensor t =
        make_tensor(n, DType::kBF16, [&](int64_t i) { return value(i, g.rank(), DType::kBF16); });
    g.all_reduce(t, ReduceOp::kSum);
    auto want = [&](int64_t i) {
      double s = 0;
      for (int r = 0; r < g.size(); ++r) s += value(i, r, DType::kBF16);
      return static_cast<double>(bf16_to_f32(f32_to_bf16(static_cast<float>(s))));
    };
    EXPECT_TRUE(all_close(values_of(t), want, [](double) { return 0.0; })) << n;
  }
}

TEST(MpiGroup, ScalarsAndBarrier) {
  ProcessGroup& g = *cpu_groups().world;
  const int p = g.size(), me = g.rank();
  EXPECT_EQ(g.all_reduce_scalar(me, ReduceOp::kSum), p * (p - 1) / 2.0);
  EXPECT_EQ(g.all_reduce_scalar(me, ReduceOp::kMax), p - 1.0);
  EXPECT_DOUBLE_EQ(g.all_reduce_scalar(me + 0.5, ReduceOp::kAvg), p / 2.0);
  g.barrier();
}

TEST(MpiGroup, EmptyTensorsAreNoOps) {
  ProcessGroup& g = *cpu_groups().world;
  Tensor t = Tensor::empty({0}, DType::kF32);
  g.all_reduce(t, ReduceOp::kSum);
  Tensor out = Tensor::empty({0}, DType::kF32);
  g.all_gather(t, out);
  g.send_recv({{P2POp::Kind::kSend, t, (g.rank() + 1) % g.size()},
               {P2POp::Kind::kRecv, out, (g.rank() + g.size() - 1) % g.size()}});
}

TEST(MpiGroup, BadArgumentsAreErrors) {
  ProcessGroup& g = *cpu_groups().world;
  Tensor fp8 = Tensor::zeros({4}, DType::kF8E4M3);
  EXPECT_THROW(g.all_reduce(fp8, ReduceOp::kSum), Error);
  Tensor in = Tensor::zeros({4}, DType::kF32), out = Tensor::zeros({4 * g.size() + 1}, DType::kF32);
  EXPECT_THROW(g.all_gather(in, out), Error);
  EXPECT_THROW(g.broadcast(in, g.size()), Error);
  EXPECT_THROW(g.send_recv({{P2POp::Kind::kSend, in, g.size()}}), Error);
}

}  // namespace
}  // namespace graft
