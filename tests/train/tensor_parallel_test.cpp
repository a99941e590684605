// Tensor and sequence parallelism end to end: `graft train` under `mpirun -np 2/4` against one
// process training the same global batch (every step's loss and every parameter after 4 steps),
// a checkpoint saved at tp2 that resumes at tp1, tp2 × dp2, cp2 and tp4 with the same losses (and
// one saved at tp4, KV heads replicated, that resumes at tp1), and the layouts that must
// be refused (exit 2, one line). CPU, f32, the MPI backend, the micro Llama of tests/train
// (4 heads, 2 KV heads, vocabulary 258: padded to 260 at tp4).
//
// Tolerances. A tp run sums the same f32 products in another grouping (partial GEMMs per rank,
// then an all-reduce), so gradients differ by a few roundings (~1e-7 relative), and AdamW turns
// rounding-level gradient elements into updates of order lr: over 4 steps at lr 1e-3 the
// parameters stay within 1e-5 relative (the measured worst is printed), the losses within 1e-6.
// A wrong shard offset, a missing all-reduce or a replicated gradient summed twice moves a loss
// by 1e-3 or more.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
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

namespace fs = std::filesystem;
using test::TempDir;

// ‖a − b‖ / ‖b‖ over the first rows of `a` that `b` has (a padded vocabulary has more); the rows
// beyond must be zero padding.
double rel_err_rows(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  EXPECT_GE(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  for (size_t i = y.size(); i < x.size(); ++i) EXPECT_EQ(x[i], 0.0f) << "padding element " << i;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void expect_same_model(const std::string& got, const std::string& want, double tol) {
  ShardedReader rg = ShardedReader::open(got), rw = ShardedReader::open(want);
  int compared = 0;
  double worst = 0;
  for (const auto& name : rw.names()) {
    if (name.rfind("model/", 0) != 0) continue;
    ASSERT_TRUE(rg.has(name)) << name;
    const double e = rel_err_rows(rg.read(name), rw.read(name));
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

class TensorParallel : public ::testing::TestWithParam<Layout> {};

TEST_P(TensorParallel, MatchesTheSingleProcessRun) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  const Layout& l = GetParam();
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string file = d / "recipe.yaml";
  const bool te = std::find(l.sets.begin(), l.sets.end(), "model.layers=te") != l.sets.end();
  std::vector<std::string> common = {"train.steps=4", "schedule.warmup_steps=1",
                                     "optim.grad_clip=1.0", "optim.lr=1e-3"};
  if (te) common.push_back("model.layers=te");
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
  run_sets.push_back("checkpoint.dir=" + (d / "tp"));
  auto r = mpirun(l.np,
                  "train --recipe " + file + sets(run_sets) + " --metrics-out " + (d / "tp.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto ref = metric_losses(d / "ref.jsonl"), got = metric_losses(d / "tp.jsonl");
  ASSERT_EQ(got.size(), 4u) << r.out;
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(got[i], ref[i], 1e-6 * std::abs(ref[i])) << l.name << " step " << i + 1;
  expect_same_model(find_latest_checkpoint(d / "tp"), find_latest_checkpoint(d / "ref"), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, TensorParallel,
    ::testing::Values(
        Layout{"tp2", 2, {"parallel.tp=2", "train.batch_size=4"}},
        Layout{"tp2_sp",
               2,
               {"parallel.tp=2", "parallel.sequence_parallel=true", "train.batch_size=4"}},
        Layout{"tp2_te", 2, {"parallel.tp=2", "train.batch_size=4", "model.layers=te"}},
        Layout{"tp2_sp_te",
               2,
               {"parallel.tp=2", "parallel.sequence_parallel=true", "train.batch_size=4",
                "model.layers=te"}},
        // 2 KV heads over 4 ranks: each replicated on two; the vocabulary padded to 260.
        Layout{"tp4", 4, {"parallel.tp=4", "train.batch_size=4"}},
        Layout{"tp4_te", 4, {"parallel.tp=4", "train.batch_size=4", "model.layers=te"}},
        Layout{"tp2_dp2", 4, {"parallel.tp=2", "train.batch_size=2"}},
        Layout{"tp2_dp2_zero_te",
               4,
               {"parallel.tp=2", "train.batch_size=2", "parallel.zero=1", "parallel.bucket_mb=0.01",
                "model.layers=te"}}),
    [](const auto& info) { return std::string(info.param.name); });

// Saved at tp2 or tp4 (2 steps), resumed in one process: the next 3 losses are those of an
// uninterrupted single-process run. Both layer sets (the TE fc1's [2, F, H] view included; at tp4
// the TE qkv's replicated key/value rows are a second part, weight_kv, stored as rows of
// layernorm_qkv.weight); at tp4 the vocabulary (258) is padded to 260 but stored at 258 rows.
class TensorParallelResume : public ::testing::TestWithParam<std::tuple<bool, int>> {};

TEST_P(TensorParallelResume, CheckpointResumesAtTp1) {
  const auto [te, tp] = GetParam();
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string file = d / "recipe.yaml";
  std::vector<std::string> common = {"train.steps=5", "schedule.warmup_steps=1",
                                     "train.batch_size=4"};
  if (te) common.push_back("model.layers=te");
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(file, common), opt).run();
  const auto ref = metric_losses(d / "ref.jsonl");
  ASSERT_EQ(ref.size(), 5u);

  std::vector<std::string> first = common;
  first.push_back("parallel.tp=" + std::to_string(tp));
  first.push_back("train.stop_after=2");
  first.push_back("checkpoint.dir=" + (d / "ck"));
  auto r = mpirun(tp, "train --recipe " + file + sets(first));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string saved = find_latest_checkpoint(d / "ck");
  ASSERT_EQ(fs::path(saved).filename(), "step-00000002") << r.out;

  std::vector<std::string> one = common;
  one.push_back("checkpoint.dir=" + (d / "ck"));
  opt.metrics_out = d / "one.jsonl";
  TrainResult resumed = Trainer(load_recipe(file, one), opt).run();
  EXPECT_EQ(resumed.resumed_from, saved);
  const auto got = metric_losses(d / "one.jsonl");
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(got[i], ref[i + 2], 1e-5 * std::abs(ref[i + 2])) << "tp1 step " << i + 3;

  EXPECT_EQ(ShardedReader::open(saved).global_shape("model/embed_tokens.weight"), Shape({258, 32}))
      << "the padding is not stored";
  // graft generate at tp from the tp checkpoint: the tokens of one process (rank 0 prints).
  const std::string gen =
      "generate --checkpoint " + saved + " --prompt-ids 5,17,3,99 " + "--max-new-tokens 8";
  auto one_rank = test::run_command(test::graft_binary() + " " + gen);
  auto two_ranks = mpirun(tp, gen + " --tp " + std::to_string(tp));
  ASSERT_EQ(one_rank.code, 0) << one_rank.out;
  ASSERT_EQ(two_ranks.code, 0) << two_ranks.out;
  const size_t at = one_rank.out.find("ids: ");
  ASSERT_NE(at, std::string::npos) << one_rank.out;
  const std::string ids = one_rank.out.substr(at, one_rank.out.find('\n', at) - at);
  EXPECT_NE(two_ranks.out.find(ids), std::string::npos) << two_ranks.out << " vs " << ids;
  EXPECT_EQ(two_ranks.out.find("ids: "), two_ranks.out.rfind("ids: ")) << "printed once";
}

INSTANTIATE_TEST_SUITE_P(Layouts, TensorParallelResume,
                         ::testing::Values(std::make_tuple(false, 2), std::make_tuple(true, 2),
                                           std::make_tuple(false, 4), std::make_tuple(true, 4)),
                         [](const auto& info) {
                           return str(std::get<0>(info.param) ? "te" : "reference", "_tp",
                                      std::get<1>(info.param));
                         });

// Saved at tp2 (2 steps), resumed under mpirun in another layout: tp2 × dp2, cp2, and tp4 (there
// the 2 KV heads are replicated: the TE qkv's rows of one tp2 rank become two parts on two tp4
// ranks). The next 3 losses are those of an uninterrupted single-process run (the global batch is
// 4 in every layout).
struct ResumeLayout {
  const char* name;
  int np;
  std::vector<std::string> sets;
};

class TensorParallelResumeIn : public ::testing::TestWithParam<std::tuple<bool, ResumeLayout>> {};

TEST_P(TensorParallelResumeIn, CheckpointSavedAtTp2ResumesInAnotherLayout) {
  const auto& [te, l] = GetParam();
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string file = d / "recipe.yaml";
  std::vector<std::string> common = {"train.steps=5", "schedule.warmup_steps=1"};
  if (te) common.push_back("model.layers=te");
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  std::vector<std::string> ref_sets = common;
  ref_sets.push_back("train.batch_size=4");
  Trainer(load_recipe(file, ref_sets), opt).run();
  const auto ref = metric_losses(d / "ref.jsonl");
  ASSERT_EQ(ref.size(), 5u);

  std::vector<std::string> first = ref_sets;
  first.push_back("parallel.tp=2");
  first.push_back("train.stop_after=2");
  first.push_back("checkpoint.dir=" + (d / "ck"));
  auto r = mpirun(2, "train --recipe " + file + sets(first));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string saved = find_latest_checkpoint(d / "ck");
  ASSERT_EQ(fs::path(saved).filename(), "step-00000002") << r.out;

  std::vector<std::string> second = common;
  second.insert(second.end(), l.sets.begin(), l.sets.end());
  second.push_back("checkpoint.dir=" + (d / "ck"));
  r = mpirun(l.np,
             "train --recipe " + file + sets(second) + " --metrics-out " + (d / "second.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from " + saved), std::string::npos) << r.out;
  const auto got = metric_losses(d / "second.jsonl");
  ASSERT_EQ(got.size(), 3u) << r.out;
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(got[i], ref[i + 2], 1e-5 * std::abs(ref[i + 2])) << l.name << " step " << i + 3;
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, TensorParallelResumeIn,
    ::testing::Combine(
        ::testing::Bool(),
        ::testing::Values(ResumeLayout{"tp2_dp2", 4, {"parallel.tp=2", "train.batch_size=2"}},
                          ResumeLayout{"cp2", 2, {"parallel.cp=2", "train.batch_size=4"}},
                          ResumeLayout{"tp4", 4, {"parallel.tp=4", "train.batch_size=4"}})),
    [](const auto& info) {
      return str(std::get<0>(info.param) ? "te" : "reference", "_", std::get<1>(info.param).name);
    });

// Layouts the model cannot take: one line from rank 0, exit code 2.
void expect_refused(int np, const std::vector<std::string>& s,
                    const std::vector<std::string>& parts) {
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  auto r = mpirun(np, "train --recipe " + (d / "recipe.yaml") + sets(s));
  EXPECT_EQ(r.code, 2) << r.out;
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.out.find("graft train:", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 1u) << r.out;
  for (const auto& p : parts) EXPECT_NE(r.out.find(p), std::string::npos) << p << " in " << r.out;
}

TEST(TensorParallel, ImpossibleLayoutsAreOneLineAndExitCode2) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  // 4 heads over 3 ranks.
  expect_refused(3, {"parallel.tp=3"},
                 {"num_attention_heads = 4", "num_key_value_heads = 2", "parallel.tp = 3"});
  // A sequence length tp does not divide, with sequence parallelism.
  expect_refused(2, {"parallel.tp=2", "parallel.sequence_parallel=true", "data.seq_len=15"},
                 {"data.seq_len", "15", "tp = 2"});
}

}  // namespace
}  // namespace graft
