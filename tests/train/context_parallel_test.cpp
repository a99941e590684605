// Context parallelism end to end: `graft train` under `mpirun -np 2/4` with parallel.cp against a
// single-process run of the same batches (losses and every parameter after 3 steps within 1e-5
// relative, both layer sets, with document masks, cp × dp, tp × cp), a checkpoint saved at cp1 that
// resumes at cp2 with the same losses, and data.seq_len not divisible by 2·cp as a one-line error.
// CPU, f32, the MPI backend.
//
// Tolerances: the runs differ only in how f32 sums are grouped (ring attention's LSE merge,
// gradients summed over cp ranks), a few roundings per gradient (the model-level test in
// tests/mpi/context_parallel_model_test.cpp compares the gradients themselves: < 1e-6). AdamW
// divides by sqrt(v) + eps, so an element whose gradient is at the rounding level gets an
// update of order lr from noise; optim.eps = 1e-6 (instead of 1e-8) keeps such elements'
// updates proportional to their gradients, and the parameters after 3 steps at lr 1e-3 then
// differ by 1.6e-6 .. 2.3e-6 per tensor (measured; 8e-6 with eps 1e-8), inside the 1e-5 asked
// for. Losses: 1e-5 relative. A chunk at the wrong place moves the loss by 1e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

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

using test::TempDir;

// The eval_loss of the last metrics line that has one (NaN when none has).
double last_eval_loss(const std::string& path) {
  double out = std::nan("");
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("eval_loss")) out = j.at("eval_loss").get<double>();
  }
  return out;
}

double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void expect_same_model(const std::string& a, const std::string& b, double tol) {
  ShardedReader ra = ShardedReader::open(a), rb = ShardedReader::open(b);
  int compared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& name : rb.names()) {
    if (name.rfind("model/", 0) != 0) continue;
    ASSERT_TRUE(ra.has(name)) << name;
    const double e = rel_err(ra.read(name), rb.read(name));
    EXPECT_LE(e, tol) << name;
    if (e > worst) worst = e, worst_name = name;
    ++compared;
  }
  EXPECT_GT(compared, 10);
  std::cout << "largest parameter difference: " << worst << " relative (" << worst_name << ")\n";
}

struct Layout {
  const char* name;
  int np;
  std::vector<std::string> sets;  // the parallel run's (batch_size is per dp rank)
  std::vector<std::string> both;  // the reference's and the parallel run's
};

class ContextParallel : public ::testing::TestWithParam<Layout> {};

TEST_P(ContextParallel, MatchesTheSingleProcessRun) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  const Layout& l = GetParam();
  TempDir d;
  // Many short documents, so that packed rows hold several and document masks matter.
  for (const auto& x : l.both)
    if (x == "data.document_mask=true")
      for (int i = 0; i < 40; ++i)
        test::write_text(d / ("doc" + std::to_string(i) + ".txt"), test::sample_text(20, 7 + i));
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string file = d / "recipe.yaml";
  std::vector<std::string> common = {"train.steps=3", "schedule.warmup_steps=1",
                                     "optim.grad_clip=1.0", "optim.lr=1e-3", "optim.eps=1e-6"};
  common.insert(common.end(), l.both.begin(), l.both.end());
  std::vector<std::string> ref_sets = common;
  ref_sets.push_back("train.batch_size=4");
  ref_sets.push_back("checkpoint.dir=" + (d / "ref"));
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(file, ref_sets), opt).run();

  std::vector<std::string> run_sets = common;
  run_sets.insert(run_sets.end(), l.sets.begin(), l.sets.end());
  run_sets.push_back("checkpoint.dir=" + (d / "cp"));
  auto r = mpirun(l.np,
                  "train --recipe " + file + sets(run_sets) + " --metrics-out " + (d / "cp.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ring attention over cp = "), std::string::npos) << r.out;
  const auto ref = metric_losses(d / "ref.jsonl"), got = metric_losses(d / "cp.jsonl");
  ASSERT_EQ(got.size(), 3u) << r.out;
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(got[i], ref[i], 1e-5 * std::abs(ref[i])) << l.name << " step " << i + 1;
  expect_same_model(find_latest_checkpoint(d / "cp"), find_latest_checkpoint(d / "ref"), 1e-5);
  const double want_eval = last_eval_loss(d / "ref.jsonl");
  if (!std::isnan(want_eval)) {
    std::cout << "eval loss " << last_eval_loss(d / "cp.jsonl") << " against " << want_eval << "\n";
    EXPECT_NEAR(last_eval_loss(d / "cp.jsonl"), want_eval, 1e-5 * want_eval) << l.name << " eval";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ContextParallel,
    ::testing::Values(
        Layout{"cp2", 2, {"parallel.cp=2", "train.batch_size=4"}, {}},
        Layout{"cp2_te", 2, {"parallel.cp=2", "train.batch_size=4"}, {"model.layers=te"}},
        Layout{"cp2_documents",
               2,
               {"parallel.cp=2", "train.batch_size=4"},
               {"data.document_mask=true", "model.layers=te"}},
        // With evaluation: the held-out loss under cp × dp equals one process's.
        Layout{"cp2_dp2",
               4,
               {"parallel.cp=2", "parallel.dp=2", "train.batch_size=2"},
               {"data.validation.fraction=0.1", "eval.every=3", "eval.batches=2"}},
        Layout{"tp2_cp2", 4, {"parallel.tp=2", "parallel.cp=2", "train.batch_size=4"}, {}},
        Layout{"tp2_cp2_sp_te",
               4,
               {"parallel.tp=2", "parallel.cp=2", "parallel.sequence_parallel=true",
                "train.batch_size=4"},
               {"model.layers=te"}},
        Layout{"cp2_dp2_te_zero",
               4,
               {"parallel.cp=2", "train.batch_size=2", "parallel.zero=1"},
               {"model.layers=te"}}),
    [](const auto& info) { return std::string(info.param.name); });

// Saved at cp1 after 2 steps, resumed at cp2: the next 2 steps' losses match an uninterrupted run.
TEST(ContextParallel, CheckpointSavedAtCp1ResumesAtCp2) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string file = d / "recipe.yaml";
  const std::vector<std::string> common = {"train.steps=4", "schedule.warmup_steps=1",
                                           "train.batch_size=4"};
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(file, common), opt).run();
  const auto ref = metric_losses(d / "ref.jsonl");
  ASSERT_EQ(ref.size(), 4u);

  std::vector<std::string> first = common;
  first.push_back("train.stop_after=2");
  first.push_back("checkpoint.dir=" + (d / "ck"));
  opt.metrics_out = d / "first.jsonl";
  Trainer(load_recipe(file, first), opt).run();

  std::vector<std::string> second = common;
  second.push_back("parallel.cp=2");
  second.push_back("checkpoint.dir=" + (d / "ck"));
  auto r =
      mpirun(2, "train --recipe " + file + sets(second) + " --metrics-out " + (d / "second.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from " + (d / "ck/step-00000002")), std::string::npos) << r.out;
  const auto got = metric_losses(d / "second.jsonl");
  ASSERT_EQ(got.size(), 2u) << r.out;
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(got[i], ref[i + 2], 1e-5 * std::abs(ref[i + 2])) << "cp2 step " << i + 3;
}

TEST(ContextParallel, SeqLenNotDivisibleByTwiceCpIsOneLineAndExitCode2) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  auto r = mpirun(
      2, "train --recipe " + (d / "recipe.yaml") + sets({"parallel.cp=2", "data.seq_len=14"}));
  EXPECT_EQ(r.code, 2) << r.out;
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.out.find("graft train:", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 1u) << r.out;
  EXPECT_NE(r.out.find("data.seq_len = 14"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 * parallel.cp = 4"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace graft
