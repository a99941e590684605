// Lazy gradient zeroing under mpirun: `graft train` in each multi-rank layout (dp with grad_accum
// and ZeRO-1, tp with and without sequence parallelism, KV heads replicated over tp4 whose
// gradients are summed over tp, cp, FP8 over tp) with the gradients poisoned
// (GRAFT_GRAD_ZEROING=poison: zero_grad fills them with NaN, so any write site or collective that
// reads a stale gradient makes the step non-finite) gives every step's loss and gradient norm and
// every parameter of the eager memset (GRAFT_GRAD_ZEROING=eager) bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/train/checkpoint.h"
#include "framework/train/tensor_pieces.h"
#include "tests/test_paths.h"
#include "tests/train/mpi_run_util.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::have_mpirun;
using test::sets;
using test::TempDir;

// `graft train` on np ranks with GRAFT_GRAD_ZEROING=mode passed to every rank.
test::CommandResult train_with(const std::string& mode, int np, const std::string& args) {
  return test::run_command(
      "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 "
      "--mca btl self,vader,tcp -x GRAFT_GRAD_ZEROING=" +
      mode + " -np " + std::to_string(np) + " " + test::graft_binary() + " train " + args);
}

// (loss, grad_norm) of every step of a --metrics-out file.
std::vector<std::pair<double, double>> loss_and_norm(const std::string& path) {
  std::vector<std::pair<double, double>> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    out.emplace_back(j.at("loss").get<double>(), j.at("grad_norm").get<double>());
  }
  return out;
}

struct Layout {
  const char* name;
  int np;
  std::vector<std::string> sets;
};

class LazyGradParallel : public ::testing::TestWithParam<Layout> {};

TEST_P(LazyGradParallel, PoisonedRunMatchesTheEagerMemset) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  const Layout& l = GetParam();
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  std::vector<std::string> s = {"train.steps=3", "schedule.warmup_steps=1", "optim.grad_clip=1.0"};
  s.insert(s.end(), l.sets.begin(), l.sets.end());
  for (const char* mode : {"eager", "poison"}) {
    std::vector<std::string> run = s;
    run.push_back("checkpoint.dir=" + (d / mode));
    auto r = train_with(mode, l.np,
                        "--recipe " + (d / "recipe.yaml") + sets(run) + " --metrics-out " +
                            (d / (std::string(mode) + ".jsonl")));
    ASSERT_EQ(r.code, 0) << mode << ": " << r.out;
  }
  const auto eager = loss_and_norm(d / "eager.jsonl"), poisoned = loss_and_norm(d / "poison.jsonl");
  ASSERT_EQ(eager.size(), 3u);
  EXPECT_EQ(poisoned, eager);
  ShardedReader re = ShardedReader::open(find_latest_checkpoint(d / "eager"));
  ShardedReader rp = ShardedReader::open(find_latest_checkpoint(d / "poison"));
  int compared = 0;
  for (const auto& name : re.names()) {
    if (name.rfind("model/", 0) != 0) continue;
    ASSERT_TRUE(rp.has(name)) << name;
    EXPECT_EQ(rp.read(name).to_f32_vector(), re.read(name).to_f32_vector()) << name;
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, LazyGradParallel,
    ::testing::Values(
        Layout{"dp2_accum2", 2, {"parallel.dp=2", "train.batch_size=2", "train.grad_accum=2"}},
        Layout{"dp2_zero_te",
               2,
               {"parallel.dp=2", "train.batch_size=2", "parallel.zero=1", "parallel.bucket_mb=0.01",
                "model.layers=te"}},
        Layout{"tp2", 2, {"parallel.tp=2", "train.batch_size=4"}},
        Layout{"tp2_sp_te",
               2,
               {"parallel.tp=2", "parallel.sequence_parallel=true", "train.batch_size=4",
                "model.layers=te", "train.grad_accum=2"}},
        // 2 KV heads over 4 ranks: each replicated on two, their gradients summed over tp.
        Layout{"tp4_te", 4, {"parallel.tp=4", "train.batch_size=4", "model.layers=te"}},
        Layout{"cp2", 2, {"parallel.cp=2", "train.batch_size=4"}},
        Layout{"cp2_te", 2, {"parallel.cp=2", "train.batch_size=4", "model.layers=te"}},
        Layout{"tp2_fp8_te",
               2,
               {"parallel.tp=2", "train.batch_size=4", "model.layers=te",
                "precision.fp8.recipe=delayed"}}),
    [](const auto& info) { return std::string(info.param.name); });

// The variable reaches every rank: a bad value is refused (exit 2, naming it) under mpirun.
TEST(LazyGradParallel, BadZeroingModeIsRefusedOnEveryRank) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  auto r = train_with("eagre", 2, "--recipe " + (d / "recipe.yaml") + sets({"parallel.dp=2"}));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("GRAFT_GRAD_ZEROING = 'eagre'"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace graft
