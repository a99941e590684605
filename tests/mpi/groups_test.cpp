// make_parallel_groups under mpirun: which world ranks each group holds, that a collective on a
// sub-group reaches only its members, both rank orders, and impossible layouts.
#include <gtest/gtest.h>

#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

std::shared_ptr<const ParallelGroups> groups_for(int64_t tp, int64_t cp, int64_t dp,
                                                 const std::string& order = "tp-cp-dp") {
  ParallelConfig c;
  c.tp = tp;
  c.cp = cp;
  c.dp = dp;
  c.order = order;
  c.timeout_s = 120;
  return make_parallel_groups(c, world_info(), Device::cpu(), "mpi-test.yaml");
}

// The sum over `g` of every member's world rank.
double sum_of_world_ranks(ProcessGroup& g) {
  Tensor t = Tensor::from_vector(std::vector<int64_t>{world_info().rank}, {1});
  g.all_reduce(t, ReduceOp::kSum);
  return t.item({0});
}

#define REQUIRE_WORLD(n) \
  if (world_info().size != (n)) GTEST_SKIP() << "needs mpirun -np " << (n)

TEST(MpiGroups, TensorParallelTwoOfFour) {
  REQUIRE_WORLD(4);
  auto g = groups_for(2, 1, 0);
  const int r = world_info().rank, base = r - r % 2;
  EXPECT_EQ(g->layout.dp, 2);
  EXPECT_EQ(g->backend, "mpi");
  EXPECT_EQ(g->tp->world_ranks(), (std::vector<int>{base, base + 1}));
  EXPECT_EQ(g->dp->world_ranks(), (std::vector<int>{r % 2, r % 2 + 2}));
  EXPECT_EQ(g->dp_cp->world_ranks(), g->dp->world_ranks());
  EXPECT_EQ(g->tp_cp->world_ranks(), g->tp->world_ranks());
  EXPECT_EQ(g->cp->backend(), "local");
  EXPECT_EQ(g->world->size(), 4);
  EXPECT_EQ(g->tp->rank(), r % 2);
  EXPECT_EQ(g->dp->rank(), r / 2);
  EXPECT_EQ(g->tp->name(), "tp");
  EXPECT_EQ(g->dp->name(), "dp");
  // all_reduce on tp sums only the tp peers; on dp only the dp peers.
  EXPECT_EQ(sum_of_world_ranks(*g->tp), 2.0 * base + 1);
  EXPECT_EQ(sum_of_world_ranks(*g->dp), 2.0 * (r % 2) + 2);
  EXPECT_EQ(sum_of_world_ranks(*g->world), 6.0);
}

TEST(MpiGroups, ContextAndDataParallelInBothOrders) {
  REQUIRE_WORLD(4);
  const int r = world_info().rank;
  // tp-cp-dp: rank = cp_rank + 2 * dp_rank.
  auto a = groups_for(1, 2, 2, "tp-cp-dp");
  EXPECT_EQ(a->cp->world_ranks(), (std::vector<int>{r - r % 2, r - r % 2 + 1}));
  EXPECT_EQ(a->dp->world_ranks(), (std::vector<int>{r % 2, r % 2 + 2}));
  EXPECT_EQ(a->dp_cp->size(), 4);
  EXPECT_EQ(a->tp->backend(), "local");
  EXPECT_EQ(sum_of_world_ranks(*a->cp), 2.0 * (r - r % 2) + 1);
  // tp-dp-cp: rank = dp_rank + 2 * cp_rank.
  auto b = groups_for(1, 2, 2, "tp-dp-cp");
  EXPECT_EQ(b->dp->world_ranks(), (std::vector<int>{r - r % 2, r - r % 2 + 1}));
  EXPECT_EQ(b->cp->world_ranks(), (std::vector<int>{r % 2, r % 2 + 2}));
  EXPECT_EQ(sum_of_world_ranks(*b->cp), 2.0 * (r % 2) + 2);
  EXPECT_EQ(sum_of_world_ranks(*b->dp_cp), 6.0);
}

TEST(MpiGroups, TensorTimesContextParallel) {
  REQUIRE_WORLD(4);
  auto g = groups_for(2, 2, 1);
  const int r = world_info().rank;
  EXPECT_EQ(g->tp_cp->size(), 4);
  EXPECT_EQ(g->dp->backend(), "local");
  EXPECT_EQ(g->cp->world_ranks(), (std::vector<int>{r % 2, r % 2 + 2}));
  EXPECT_EQ(g->dp_cp->world_ranks(), g->cp->world_ranks());
  EXPECT_EQ(sum_of_world_ranks(*g->dp_cp), 2.0 * (r % 2) + 2);
}

TEST(MpiGroups, DataParallelIsTheWholeWorldByDefault) {
  auto g = groups_for(1, 1, 0);
  EXPECT_EQ(g->dp->size(), world_info().size);
  EXPECT_EQ(g->tp->backend(), "local");
  const int p = world_info().size;
  EXPECT_EQ(sum_of_world_ranks(*g->dp), p * (p - 1) / 2.0);
}

TEST(MpiGroups, ImpossibleLayoutsNameTheKeyWorldAndProduct) {
  const int p = world_info().size;
  try {
    groups_for(p + 1, 1, 1);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("mpi-test.yaml"), std::string::npos) << m;
    EXPECT_NE(m.find("parallel.tp"), std::string::npos) << m;
    EXPECT_NE(m.find("world size " + std::to_string(p)), std::string::npos) << m;
    EXPECT_NE(m.find("= " + std::to_string(p + 1) + " "), std::string::npos) << m;
  }
  try {
    groups_for(p + 1, 1, 0);  // dp inferred: not divisible
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("parallel.dp"), std::string::npos) << m;
    EXPECT_NE(m.find("world size " + std::to_string(p)), std::string::npos) << m;
  }
  // Still usable afterwards: nothing collective ran before the error.
  EXPECT_EQ(mpi_test::cpu_groups().world->all_reduce_scalar(1, ReduceOp::kSum), p);
}

}  // namespace
}  // namespace graft
