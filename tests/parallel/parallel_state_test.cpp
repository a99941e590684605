// make_parallel_groups in a single process: the local groups, and validation of layouts with
// the messages users see (file, key, world size, product).
#include "parallel/parallel_state.h"

#include <gtest/gtest.h>

#include "parallel/launch.h"

namespace graft {
namespace {

// The InputError message of make_parallel_groups(c) at world size `world` ("" when none).
std::string error_of(const ParallelConfig& c, int world, Device device = Device::cpu()) {
  WorldInfo w;
  w.size = world;
  try {
    make_parallel_groups(c, w, device, "recipe.yaml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_has(const std::string& msg, const std::string& part) {
  EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
}

TEST(ParallelGroups, SingleProcessGroupsAreLocal) {
  auto g = single_process_groups();
  for (const auto& p : {g->world, g->tp, g->cp, g->dp, g->dp_cp, g->tp_cp}) {
    ASSERT_TRUE(p);
    EXPECT_EQ(p->size(), 1);
    EXPECT_EQ(p->backend(), "local");
  }
  EXPECT_EQ(g->tp->name(), "tp");
  EXPECT_EQ(g->dp_cp->name(), "dp_cp");
  EXPECT_EQ(g->layout.dp, 1);
  EXPECT_EQ(g->backend, "local");
}

TEST(ParallelGroups, WorldOfOneResolvesDpAndStaysLocal) {
  ParallelConfig c;
  c.timeout_s = 30;
  auto g = make_parallel_groups(c, world_info(), Device::cpu(), "recipe.yaml");
  EXPECT_EQ(g->layout.dp, 1);
  EXPECT_EQ(g->layout.timeout_s, 30);
  EXPECT_EQ(g->backend, "local");
  EXPECT_EQ(g->dp->backend(), "local");
  EXPECT_EQ(g->world->name(), "world");
}

TEST(ParallelGroups, TensorParallelTwoAtWorldOneIsAnInputError) {
  ParallelConfig c;
  c.tp = 2;
  const std::string m = error_of(c, 1);
  expect_has(m, "recipe.yaml");
  expect_has(m, "parallel.tp");
  expect_has(m, "world size 1");
  expect_has(m, "divisible");
  c.dp = 1;
  const std::string m2 = error_of(c, 1);
  expect_has(m2, "parallel.tp * parallel.cp * parallel.dp = 2 * 1 * 1 = 2");
  expect_has(m2, "world size 1");
  EXPECT_EQ(m2.find('\n'), std::string::npos) << "one line";
}

TEST(ParallelGroups, ProductMustEqualTheWorld) {
  ParallelConfig c;
  c.tp = 2;
  c.dp = 3;
  const std::string m = error_of(c, 4);
  expect_has(m, "recipe.yaml: parallel.tp * parallel.cp * parallel.dp = 2 * 1 * 3 = 6");
  expect_has(m, "does not equal the world size 4");
  c.tp = 3;
  c.dp = 0;
  const std::string m2 = error_of(c, 4);
  expect_has(m2, "parallel.dp = 0");
  expect_has(m2, "world size 4");
  expect_has(m2, "parallel.tp * parallel.cp = 3 * 1 = 3");
}

TEST(ParallelGroups, BadValuesNameTheirKey) {
  auto with = [](auto edit) {
    ParallelConfig c;
    edit(c);
    return error_of(c, 2);
  };
  expect_has(with([](ParallelConfig& c) { c.tp = 0; }), "parallel.tp = 0");
  expect_has(with([](ParallelConfig& c) { c.cp = -1; }), "parallel.cp = -1");
  expect_has(with([](ParallelConfig& c) { c.dp = -2; }), "parallel.dp = -2");
  expect_has(with([](ParallelConfig& c) { c.pp = 2; }), "parallel.pp = 2");
  expect_has(with([](ParallelConfig& c) { c.order = "dp-tp-cp"; }), "parallel.order = 'dp-tp-cp'");
  expect_has(with([](ParallelConfig& c) { c.backend = "gloo"; }), "parallel.backend = 'gloo'");
  expect_has(with([](ParallelConfig& c) { c.timeout_s = 0; }), "parallel.timeout_s = 0");
  expect_has(with([](ParallelConfig& c) { c.zero = 3; }), "parallel.zero = 3");
  expect_has(with([](ParallelConfig& c) { c.bucket_mb = -1; }), "parallel.bucket_mb = -1");
  expect_has(with([](ParallelConfig& c) { c.backend = "nccl"; }),
             "parallel.backend = nccl needs CUDA tensors, but the device is cpu");
}

TEST(ParallelGroups, NcclOnTheCpuIsRejectedEvenAtWorldOne) {
  ParallelConfig c;
  c.backend = "nccl";
  expect_has(error_of(c, 1), "parallel.backend = nccl");
}

TEST(Launch, WorldOfOneWithoutALauncher) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "running under a launcher";
  const WorldInfo& w = init_world();
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.rank, 0);
  EXPECT_FALSE(w.mpi);
  EXPECT_EQ(&init_world(), &w);  // idempotent
  EXPECT_EQ(rank_prefix(), "");
  EXPECT_TRUE(bind_local_device(Device::cpu(), false).is_cpu());
  int x = 5;
  world_broadcast(&x, sizeof x, 0);  // a no-op in a world of one
  EXPECT_EQ(x, 5);
}

TEST(Launch, BindsTheRequestedGpuInAWorldOfOne) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(bind_local_device(Device::cuda(0), false), Device::cuda(0));
  EXPECT_THROW(bind_local_device(Device::cuda(device_backend().device_count()), false), InputError);
}

}  // namespace
}  // namespace graft
