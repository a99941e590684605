// Data parallelism end to end: `graft train` under `mpirun -np 2/4` against a single-process run
// of the same global batch (losses and every parameter after 5 steps within 1e-6 relative), and
// checkpoints that change layout on resume. CPU, f32, the MPI backend.
//
// Tolerances. The runs differ only in how f32 sums are grouped (each rank sums its rows, then
// the ranks' means are averaged, against one sum over all rows), so each gradient differs by a
// few roundings (~1e-7 relative). Losses: 1e-6 relative. Parameters: AdamW divides by sqrt(v),
// so an element whose gradient is itself at the rounding level gets an update of order lr from
// noise; over 5 steps at lr 1e-3 this leaves whole tensors 1.3e-7 .. 8.1e-7 apart (measured
// with the loss normalised by the step's global target count), within the 1e-6 asked for. A
// wrong row in the sampler, a bucket reduced twice or a ZeRO shard at the wrong offset moves a
// tensor by 1e-3 or more.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "framework/model/hf_loader.h"
#include "framework/train/checkpoint.h"
#include "framework/train/tensor_pieces.h"
#include "framework/train/trainer.h"
#include "tests/test_paths.h"
#include "tests/train/mpi_run_util.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::have_mpirun;
using test::metric_losses;
using test::mpirun;
using test::sets;

namespace fs = std::filesystem;
using test::TempDir;

using MpiRun = test::CommandResult;

double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The recipe file of the micro model; `sets` become --set arguments for the mpirun runs.
std::string recipe(const TempDir& d) {
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  return d / "recipe.yaml";
}

// Every model/ tensor of two checkpoints within `tol` relative.
void expect_same_model(const std::string& a, const std::string& b, double tol) {
  ShardedReader ra = ShardedReader::open(a), rb = ShardedReader::open(b);
  int compared = 0;
  double worst = 0;
  for (const auto& name : rb.names()) {
    if (name.rfind("model/", 0) != 0) continue;
    ASSERT_TRUE(ra.has(name)) << name;
    const double e = rel_err(ra.read(name), rb.read(name));
    EXPECT_LE(e, tol) << name;
    worst = std::max(worst, e);
    ++compared;
  }
  EXPECT_GT(compared, 10);
  std::cout << "largest parameter difference: " << worst << " relative\n";
}

struct Layout {
  const char* name;
  int np;
  std::vector<std::string> sets;
};

class DataParallel : public ::testing::TestWithParam<Layout> {};

TEST_P(DataParallel, MatchesTheSingleProcessRunOfTheSameGlobalBatch) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  const Layout& l = GetParam();
  TempDir d;
  const std::string file = recipe(d);
  const std::vector<std::string> common = {"train.steps=5", "schedule.warmup_steps=1",
                                           "optim.grad_clip=1.0", "optim.lr=1e-3"};
  // The reference: one process, batch 8.
  std::vector<std::string> ref_sets = common;
  ref_sets.push_back("train.batch_size=8");
  ref_sets.push_back("checkpoint.dir=" + (d / "ref"));
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(file, ref_sets), opt).run();

  std::vector<std::string> run_sets = common;
  run_sets.insert(run_sets.end(), l.sets.begin(), l.sets.end());
  run_sets.push_back("checkpoint.dir=" + (d / "dp"));
  MpiRun r = mpirun(
      l.np, "train --recipe " + file + sets(run_sets) + " --metrics-out " + (d / "dp.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(" ranks (tp 1, cp 1, dp " + std::to_string(l.np)), std::string::npos)
      << r.out;
  const auto ref = metric_losses(d / "ref.jsonl"), got = metric_losses(d / "dp.jsonl");
  ASSERT_EQ(got.size(), 5u) << "only rank 0 writes the metrics";
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(got[i], ref[i], 1e-6 * std::abs(ref[i])) << l.name << " step " << i + 1;
  expect_same_model(find_latest_checkpoint(d / "dp"), find_latest_checkpoint(d / "ref"), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DataParallel,
    ::testing::Values(
        Layout{"dp2", 2, {"parallel.dp=2", "train.batch_size=4"}},
        Layout{"dp4", 4, {"train.batch_size=2"}},  // dp inferred from the world
        Layout{
            "dp2_zero",
            2,
            {"parallel.dp=2", "parallel.zero=1", "train.batch_size=4", "parallel.bucket_mb=0.01"}},
        Layout{"dp2_accum2", 2, {"parallel.dp=2", "train.batch_size=2", "train.grad_accum=2"}}),
    [](const auto& info) { return std::string(info.param.name); });

// Saved at dp2 with ZeRO after 2 steps; resumed at dp1 without ZeRO and at dp4 with ZeRO, the
// next 3 steps' losses match an uninterrupted dp1 run.
TEST(DataParallel, CheckpointChangesLayoutOnResume) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  const std::string file = recipe(d);
  const std::vector<std::string> common = {"train.steps=5", "schedule.warmup_steps=1",
                                           "precision.params=bf16"};
  std::vector<std::string> ref_sets = common;
  ref_sets.push_back("train.batch_size=8");
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(file, ref_sets), opt).run();
  const auto ref = metric_losses(d / "ref.jsonl");
  ASSERT_EQ(ref.size(), 5u);

  std::vector<std::string> first = common;
  for (const char* s : {"parallel.dp=2", "parallel.zero=1", "train.batch_size=4",
                        "train.stop_after=2", "parallel.bucket_mb=0.01"})
    first.push_back(s);
  first.push_back("checkpoint.dir=" + (d / "ck"));
  MpiRun r = mpirun(2, "train --recipe " + file + sets(first));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string saved = find_latest_checkpoint(d / "ck");
  ASSERT_EQ(fs::path(saved).filename(), "step-00000002") << r.out;
  fs::copy(d / "ck", d / "ck4", fs::copy_options::recursive);

  // dp1, no ZeRO, in this process.
  std::vector<std::string> one = common;
  one.push_back("train.batch_size=8");
  one.push_back("checkpoint.dir=" + (d / "ck"));
  opt.metrics_out = d / "one.jsonl";
  TrainResult resumed = Trainer(load_recipe(file, one), opt).run();
  EXPECT_EQ(resumed.resumed_from, saved);
  const auto got1 = metric_losses(d / "one.jsonl");
  ASSERT_EQ(got1.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(got1[i], ref[i + 2], 1e-6 * std::abs(ref[i + 2])) << "dp1 step " << i + 3;

  // dp4 with ZeRO.
  std::vector<std::string> four = common;
  for (const char* s : {"parallel.zero=1", "train.batch_size=2"}) four.push_back(s);
  four.push_back("checkpoint.dir=" + (d / "ck4"));
  MpiRun r4 =
      mpirun(4, "train --recipe " + file + sets(four) + " --metrics-out " + (d / "four.jsonl"));
  ASSERT_EQ(r4.code, 0) << r4.out;
  EXPECT_NE(r4.out.find("resumed from " + (d / "ck4/step-00000002")), std::string::npos) << r4.out;
  const auto got4 = metric_losses(d / "four.jsonl");
  ASSERT_EQ(got4.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(got4[i], ref[i + 2], 1e-6 * std::abs(ref[i + 2])) << "dp4 step " << i + 3;
}

// Saved and resumed in the same layout (dp2 + ZeRO), training is bit-identical to the run that
// was not interrupted.
TEST(DataParallel, SameLayoutResumeIsBitIdentical) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  const std::string file = recipe(d);
  const std::string base = sets({"train.steps=4", "schedule.warmup_steps=1", "parallel.zero=1",
                                 "train.batch_size=4", "precision.params=bf16"});
  MpiRun full = mpirun(2, "train --recipe " + file + base + " --metrics-out " + (d / "full.jsonl"));
  ASSERT_EQ(full.code, 0) << full.out;
  const std::string ck = sets({"checkpoint.dir=" + (d / "ck")});
  MpiRun a = mpirun(2, "train --recipe " + file + base + ck + " --set train.stop_after=2" +
                           " --metrics-out " + (d / "split.jsonl"));
  ASSERT_EQ(a.code, 0) << a.out;
  MpiRun b =
      mpirun(2, "train --recipe " + file + base + ck + " --metrics-out " + (d / "split.jsonl"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("resumed from " + (d / "ck/step-00000002")), std::string::npos) << b.out;
  const auto want = metric_losses(d / "full.jsonl"), got = metric_losses(d / "split.jsonl");
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got, want);  // exact: the same arithmetic in the same order

  // graft export from this ZeRO checkpoint (pieces from two ranks) writes the f32 masters.
  const std::string export_cmd = "export --checkpoint " + (d / "ck") + " --out " + (d / "hf");
  ASSERT_EQ(std::system((test::graft_binary() + " " + export_cmd + " > /dev/null 2>&1").c_str()),
            0);
  ShardedReader r = ShardedReader::open(find_latest_checkpoint(d / "ck"));
  auto exported = load_hf_model(d / "hf");
  int compared = 0;
  for (auto& [name, p] : exported->named_parameters()) {
    ASSERT_TRUE(r.has("optim/master/" + name)) << name;
    EXPECT_EQ(p->value.to_f32_vector(), r.read("optim/master/" + name).to_f32_vector()) << name;
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

// An impossible layout: exit 2 and one line for the job (rank 0 prints it), naming the key, the
// world size and the product.
TEST(DataParallel, ImpossibleLayoutIsOneLineAndExitCode2) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  const std::string file = recipe(d);
  MpiRun r = mpirun(2, "train --recipe " + file + " --set parallel.dp=3");
  EXPECT_NE(r.code, 0) << r.out;
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.out.find("graft train:", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 1u) << r.out;
  EXPECT_NE(r.out.find("parallel"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3"), std::string::npos) << r.out;
}

// A bad recipe key is found alike by every rank: the job prints it once (rank 0), exit 2.
TEST(DataParallel, BadRecipeKeyIsOneLineForTheJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  const std::string file = recipe(d);
  MpiRun r = mpirun(2, "train --recipe " + file + " --set schedule.warmup_steps=100000");
  EXPECT_EQ(r.code, 2) << r.out;
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.out.find("graft train:", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 1u) << r.out;
  EXPECT_NE(r.out.find("schedule.warmup_steps"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("rank 1"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace graft
