// The local group (size 1): identities and copies, and the argument checks every backend shares.
#include <gtest/gtest.h>

#include "parallel/process_group.h"

namespace graft {
namespace {

Tensor iota(int64_t n, DType dtype = DType::kF32) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) - 3.5f;
  return Tensor::from_vector(v, {n}).to(dtype);
}

TEST(LocalGroup, Identity) {
  auto g = make_local_group("tp");
  EXPECT_EQ(g->rank(), 0);
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->name(), "tp");
  EXPECT_EQ(g->backend(), "local");
  EXPECT_EQ(g->world_ranks(), std::vector<int>{0});
}

TEST(LocalGroup, ReductionsLeaveTheTensorAndCopiesCopy) {
  auto g = make_local_group("dp");
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg}) {
    Tensor t = iota(7);
    g->all_reduce(t, op, true)->wait();
    EXPECT_EQ(t.to_f32_vector(), iota(7).to_f32_vector()) << reduce_op_name(op);
  }
  Tensor out = Tensor::zeros({7}, DType::kBF16);
  g->all_gather(iota(7, DType::kBF16), out);
  EXPECT_EQ(out.to_f32_vector(), iota(7).to_f32_vector());
  Tensor shard = Tensor::zeros({7}, DType::kF32);
  g->reduce_scatter(iota(7), shard, ReduceOp::kSum);
  EXPECT_EQ(shard.to_f32_vector(), iota(7).to_f32_vector());
  Tensor b = iota(3);
  g->broadcast(b, 0);
  EXPECT_EQ(b.to_f32_vector(), iota(3).to_f32_vector());
  EXPECT_THROW(g->broadcast(b, 1), Error);
  EXPECT_EQ(g->all_reduce_scalar(2.5, ReduceOp::kAvg), 2.5);
  g->barrier();
}

TEST(LocalGroup, SendRecvToSelfPairsInOrder) {
  auto g = make_local_group("cp");
  Tensor a = iota(4), b = iota(2), ra = Tensor::zeros({4}, DType::kF32),
         rb = Tensor::zeros({2}, DType::kF32);
  g->send_recv({{P2POp::Kind::kSend, a, 0},
                {P2POp::Kind::kRecv, ra, 0},
                {P2POp::Kind::kSend, b, 0},
                {P2POp::Kind::kRecv, rb, 0}});
  EXPECT_EQ(ra.to_f32_vector(), a.to_f32_vector());
  EXPECT_EQ(rb.to_f32_vector(), b.to_f32_vector());
  EXPECT_THROW(g->send_recv({{P2POp::Kind::kSend, a, 0}}), Error);
  EXPECT_THROW(g->send_recv({{P2POp::Kind::kSend, a, 1}, {P2POp::Kind::kRecv, ra, 1}}), Error);
}

TEST(CollectiveChecks, DtypesShapesAndContiguity) {
  auto g = make_local_group("tp");
  for (DType t : {DType::kF32, DType::kF64, DType::kBF16, DType::kF16, DType::kI32, DType::kI64,
                  DType::kU8}) {
    EXPECT_TRUE(supported_dtype(t)) << dtype_name(t);
  }
  for (DType t : {DType::kF8E4M3, DType::kF8E5M2, DType::kBool, DType::kU64, DType::kI8}) {
    EXPECT_FALSE(supported_dtype(t)) << dtype_name(t);
  }
  Tensor fp8 = Tensor::zeros({4}, DType::kF8E4M3);
  try {
    g->all_reduce(fp8, ReduceOp::kSum);
    FAIL() << "fp8 all_reduce accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce on group tp: cannot reduce fp8_e4m3"),
              std::string::npos)
        << e.what();
  }
  Tensor fp8_out = Tensor::zeros({4}, DType::kF8E4M3);
  EXPECT_THROW(g->reduce_scatter(fp8, fp8_out, ReduceOp::kSum), Error);
  g->all_gather(fp8, fp8_out);  // data movement takes any dtype

  Tensor m = Tensor::zeros({3, 4}, DType::kF32);
  Tensor mt = m.transpose(0, 1);
  EXPECT_THROW(g->all_reduce(mt, ReduceOp::kSum), Error);
  Tensor wrong = Tensor::zeros({5}, DType::kF32);
  try {
    g->all_gather(iota(4), wrong);
    FAIL() << "wrong output size accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("output has 5 elements, expected 4"), std::string::npos)
        << e.what();
  }
  Tensor other = Tensor::zeros({4}, DType::kF64);
  EXPECT_THROW(g->all_gather(iota(4), other), Error);
}

}  // namespace
}  // namespace graft
