// Validation and evaluation: held-out windows disjoint from what the sampler draws, deterministic
// evaluations that leave weights, gradients and optimizer state alone, the metrics fields, the
// closing summary, one-line errors for bad keys, the data-parallel eval against one process, the
// TensorBoard record framing and the SVG plot.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "framework/data/prepare.h"
#include "framework/data/validation.h"
#include "framework/io/crc32c.h"
#include "framework/train/bench.h"
#include "framework/train/plot.h"
#include "framework/train/tensorboard.h"
#include "framework/train/trainer.h"
#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

TrainOptions quiet(std::ostream* out = nullptr) {
  static std::ostringstream sink;
  TrainOptions opt;
  opt.out = out ? out : &sink;
  return opt;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

const std::string kFraction = "data.validation.fraction=0.1";

TEST(Validation, HeldOutWindowsAreSpreadEvenly) {
  // 100 windows of 16 tokens, 10% held out: windows 9, 19, ..., 99.
  const auto w = held_out_windows(1600 + 7, 16, 0.1);
  ASSERT_EQ(w.size(), 10u);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], static_cast<int64_t>(16 * (10 * i + 9)));
  // Adjacent windows merge into one range.
  const auto r = held_out_ranges(16 * 10, 16, 0.5);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], (std::pair<int64_t, int64_t>{16, 32}));
  const auto all = held_out_ranges(16 * 10, 16, 0.99);
  EXPECT_EQ(all.size(), 1u);
}

// Tokens are their own positions, so every sampled token says where it came from: over several
// epochs at odd offsets none lies in a held-out window, and every other token is reachable.
TEST(Validation, TheSamplerNeverDrawsAHeldOutToken) {
  TempDir d;
  const int64_t n = 3000, S = 16;
  std::vector<int64_t> tokens(n);
  for (int64_t i = 0; i < n; ++i) tokens[i] = i;
  write_token_shard(d / "shard-00000.bin", tokens, 2);
  nlohmann::json meta = {{"format", "graft-tokens"},
                         {"version", 1},
                         {"tokenizer", "byte"},
                         {"vocab_size", 258},
                         {"eos_id", 257},
                         {"tokens", n},
                         {"shards", {"shard-00000.bin"}}};
  test::write_text(d / "meta.json", meta.dump());
  TokenDataset data = TokenDataset::open(d.path());
  const auto ranges = held_out_ranges(n, S, 0.05);
  std::set<int64_t> held;
  for (auto [b, e] : ranges)
    for (int64_t t = b; t < e; ++t) held.insert(t);
  ASSERT_EQ(held.size(), static_cast<size_t>(S * (n / S / 20)));
  Sampler s(&data, {S, 99, 0, 1}, ranges);
  EXPECT_EQ(s.stream_tokens(), n - static_cast<int64_t>(held.size()));
  std::set<int64_t> seen;
  for (int i = 0; i < 40; ++i) {  // ~4 epochs of 2 x 10 windows... of 176
    Tensor t = s.next(20).input_ids;
    for (int64_t j = 0; j < t.numel(); ++j) seen.insert(t.data<int64_t>()[j]);
  }
  for (int64_t t : seen) ASSERT_EQ(held.count(t), 0u) << "token " << t << " is held out";
  EXPECT_GT(seen.size(), static_cast<size_t>(n - held.size()) * 9 / 10);
}

struct Snapshot {
  std::vector<std::vector<float>> params, grads, state;
  static Snapshot take(Trainer& t) {
    Snapshot s;
    for (auto& [n, p] : t.model().named_parameters()) {
      s.params.push_back(p->value.to_f32_vector());
      s.grads.push_back(p->grad.defined() ? p->grad.to_f32_vector() : std::vector<float>{});
    }
    for (auto& [n, x] : t.optimizer().state_tensors()) s.state.push_back(x.to_f32_vector());
    return s;
  }
  bool operator==(const Snapshot&) const = default;
};

TEST(Eval, IsDeterministicAndTouchesNothing) {
  TempDir d;
  Trainer t(test::micro(d.path(), {kFraction, "train.steps=3"}), quiet());
  t.run();
  ASSERT_NE(t.evaluator(), nullptr);
  auto one = single_process_groups();
  const Snapshot before = Snapshot::take(t);
  const double a = t.evaluator()->evaluate(t.model(), *one->dp_cp);
  const double b = t.evaluator()->evaluate(t.model(), *one->dp_cp);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(std::isfinite(a));
  EXPECT_TRUE(Snapshot::take(t) == before);
  EXPECT_EQ(t.evaluator()->batch(1).to_f32_vector(), t.evaluator()->batch(1).to_f32_vector());
}

// Evaluating every step changes nothing in training: the same losses bit for bit as a run that
// evaluates only at the end.
TEST(Eval, DoesNotChangeTraining) {
  TempDir d;
  TrainResult every = Trainer(test::micro(d.path(), {kFraction, "eval.every=1"}), quiet()).run();
  TrainResult end = Trainer(test::micro(d.path(), {kFraction}), quiet()).run();
  ASSERT_EQ(every.steps.size(), end.steps.size());
  for (size_t i = 0; i < every.steps.size(); ++i)
    EXPECT_EQ(every.steps[i].loss, end.steps[i].loss) << "step " << i + 1;
  ASSERT_EQ(every.evals.size(), 6u);
  ASSERT_EQ(end.evals.size(), 1u);
  EXPECT_EQ(every.evals.back(), end.evals.back());
}

TEST(Eval, MetricsFieldsAndSummary) {
  TempDir d;
  TrainOptions opt = quiet();
  std::ostringstream out;
  opt.out = &out;
  opt.metrics_out = d / "m.jsonl";
  TrainResult r =
      Trainer(test::micro(d.path(), {kFraction, "eval.every=2", "eval.batches=3", "logging.every=3",
                                     "checkpoint.dir=" + (d / "ck")}),
              opt)
          .run();
  const auto recs = read_jsonl(opt.metrics_out);
  std::vector<int64_t> steps, eval_steps;
  for (const auto& j : recs) {
    steps.push_back(j["step"].get<int64_t>());
    EXPECT_GT(j["peak_mem_gib"].get<double>(), 0.0) << j;
    EXPECT_FALSE(j.contains("mfu")) << "no peak on the CPU unless logging.peak_tflops: " << j;
    if (j.contains("eval_loss")) {
      eval_steps.push_back(j["step"].get<int64_t>());
      EXPECT_NEAR(j["eval_ppl"].get<double>(), std::exp(j["eval_loss"].get<double>()), 1e-9);
    }
  }
  // Logged: the first, every 3rd, every eval step (2, 4, 6) and the last.
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 6}));
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{2, 4, 6}));
  ASSERT_EQ(r.evals.size(), 3u);
  EXPECT_NE(out.str().find("| eval "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("eval: 3 batches of 2 x 16 tokens from "), std::string::npos);
  // The summary: tokens (6 steps x 2 x 16), best eval and its step, the checkpoint.
  auto best = *std::min_element(r.evals.begin(), r.evals.end(),
                                [](auto& a, auto& b) { return a.second < b.second; });
  char buf[64];
  std::snprintf(buf, sizeof buf, "best eval loss %.4f (ppl %.2f) at step %lld", best.second,
                std::exp(best.second), static_cast<long long>(best.first));
  EXPECT_EQ(r.summary.rfind("summary: 6 steps (1..6), 192 tokens in ", 0), 0u) << r.summary;
  EXPECT_NE(r.summary.find(buf), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("last checkpoint " + (d / "ck/step-00000006")), std::string::npos)
      << r.summary;
  EXPECT_NE(out.str().find(r.summary), std::string::npos);

  // With a peak, mfu = flops/token x tokens/s / peak.
  opt.metrics_out = d / "mfu.jsonl";
  Recipe rp = test::micro(d.path(), {"logging.peak_tflops=0.5", "train.steps=2"});
  Trainer(rp, opt).run();
  const double fpt = model_flops_per_token(rp.model.config, rp.data.seq_len);
  for (const auto& j : read_jsonl(opt.metrics_out)) {
    ASSERT_TRUE(j.contains("mfu")) << j;
    EXPECT_NEAR(j["mfu"].get<double>(), fpt * j["tokens_per_s"].get<double>() / 0.5e12, 1e-12);
    EXPECT_FALSE(j.contains("eval_loss"));
  }
}

TEST(Eval, SummaryWithoutEvalOrCheckpoint) {
  RunSummary s;
  s.first_step = 90;
  s.last_step = 100;
  s.tokens = 20480;
  s.total_tokens = 204800;
  s.wall_s = 10;
  EXPECT_EQ(format_summary(s),
            "summary: 10 steps (91..100), 20,480 tokens in 10s (2,048 tokens/s), 204,800 since "
            "step 0; no eval (data.validation is not set); no checkpoint (checkpoint.dir is "
            "empty); no HF export.");
  EXPECT_EQ(with_commas(1234567), "1,234,567");
  EXPECT_EQ(with_commas(12), "12");
}

// data.validation.path: text globs tokenized with the training tokenizer; every window counts.
TEST(Eval, ValidationFromOtherFiles) {
  TempDir d;
  fs::create_directories(d / "val");
  test::write_text(d / "val/v.txt", test::sample_text(1000, 9));  // 1000 tokens + EOS: 62 windows
  std::ostringstream out;
  TrainResult r =
      Trainer(
          test::micro(d.path(), {"data.validation.path=" + (d / "val/*.txt"), "eval.batches=4"}),
          quiet(&out))
          .run();
  ASSERT_EQ(r.evals.size(), 1u);
  EXPECT_TRUE(std::isfinite(r.evals[0].second));
  EXPECT_NE(out.str().find("from 62 windows of data.validation.path"), std::string::npos)
      << out.str();
  // Fewer windows than the batches ask for: they are reused, and the start-up line says so.
  std::ostringstream out2;
  Trainer t(test::micro(d.path(), {"data.validation.path=" + (d / "val/*.txt"), "eval.batches=40"}),
            quiet(&out2));
  t.run();
  EXPECT_NE(out2.str().find("(80 sequences: windows reused cyclically"), std::string::npos)
      << out2.str();
  Tensor b39 = t.evaluator()->batch(39);  // sequences 78, 79: windows 16, 17
  EXPECT_EQ(b39.to_f32_vector(), t.evaluator()->batch(39).to_f32_vector());
  // A validation set shorter than one window is an error naming the key.
  test::write_text(d / "val/v.txt", "tiny");
  const std::string msg = test::input_error([&] {
    Trainer(test::micro(d.path(), {"data.validation.path=" + (d / "val/*.txt")}), quiet());
  });
  EXPECT_NE(msg.find("no validation windows of data.validation.path = '" + (d / "val/*.txt")),
            std::string::npos)
      << msg;
}

TEST(Eval, BadKeysAreOneLineErrors) {
  TempDir d;
  std::vector<std::string> all;
  auto err = [&](std::vector<std::string> sets) {
    all.push_back(test::input_error([&] { test::micro(d.path(), sets); }));
    return all.back();
  };
  const std::string file = d / "recipe.yaml";
  std::string m = err({"data.validation.fractoin=0.1"});
  EXPECT_NE(m.find("data.validation.fractoin: unknown key"), std::string::npos) << m;
  m = err({"data.validation.fraction=1.5"});
  EXPECT_NE(m.find("data.validation.fraction = 1.5, expected 0 < fraction < 1"), std::string::npos)
      << m;
  m = err({kFraction, "data.validation.path=" + d.path()});
  EXPECT_NE(m.find("expected exactly one of data.validation.fraction"), std::string::npos) << m;
  m = err({"data.validation.path=" + (d / "nothing*.txt")});
  EXPECT_NE(m.find("is neither a prepared folder nor a glob of files"), std::string::npos) << m;
  m = err({"data.validation.path=" + d.path()});
  EXPECT_NE(m.find("has no meta.json"), std::string::npos) << m;
  m = err({"eval.every=5"});
  EXPECT_NE(m.find("eval.every = 5 needs validation data"), std::string::npos) << m;
  m = err({kFraction, "eval.batches=0"});
  EXPECT_NE(m.find("eval.batches"), std::string::npos) << m;
  m = err({kFraction, "eval.evry=2"});
  EXPECT_NE(m.find("eval.evry: unknown key (did you mean every?) (known here: batches, every)"),
            std::string::npos)
      << m;
  m = err({"logging.peak_tflops=-1"});
  EXPECT_NE(m.find("logging.peak_tflops = -1"), std::string::npos) << m;
  for (const std::string& e : all) EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  // In a file, the error names file:line.
  m = test::input_error([&] { test::micro(d.path(), {}, "eval:\n  every: 2\n  batchez: 3\n"); });
  EXPECT_NE(m.find(file + ":"), std::string::npos) << m;
  EXPECT_NE(m.find("eval.batchez: unknown key"), std::string::npos) << m;
}

// eval is not part of the run's identity (a resume may change it); data.validation is, and a
// recipe without it keeps the hash it had before validation existed.
TEST(Eval, ConfigHash) {
  TempDir d;
  const std::string base = test::micro(d.path()).config_hash();
  EXPECT_EQ(test::micro(d.path(), {"eval.batches=3"}).config_hash(), base);
  EXPECT_NE(test::micro(d.path(), {kFraction}).config_hash(), base);
  EXPECT_FALSE(test::micro(d.path()).resolved["data"]["validation"].IsDefined());
}

// Two ranks evaluating their halves of each batch reduce to the one-process evaluation of the
// whole batches (the rows are the same; each rank's mean is over an equal share).
TEST(Eval, DataParallelSlicesMatchOneProcess) {
  TempDir d;
  const std::string b4 = "eval.batches=4";
  Trainer t(test::micro(d.path(), {kFraction, b4, "train.steps=2", "train.batch_size=4"}), quiet());
  t.run();
  const Recipe r = test::micro(d.path(), {kFraction, b4, "train.batch_size=2"});
  auto one = single_process_groups();
  const double whole = t.evaluator()->evaluate(t.model(), *one->dp_cp);
  // The same windows sliced for two ranks, through make_evaluator as the trainer calls it.
  TokenDataset data = TokenDataset::open(ensure_dataset(r.data));
  auto r0 = make_evaluator(r, data, *one->world, 0, 2),
       r1 = make_evaluator(r, data, *one->world, 1, 2);
  for (int64_t b = 0; b < r.eval.batches; ++b) {
    Tensor a = r0->batch(b), c = r1->batch(b), w = t.evaluator()->batch(b);
    std::vector<float> joined = a.to_f32_vector(), second = c.to_f32_vector();
    joined.insert(joined.end(), second.begin(), second.end());
    EXPECT_EQ(joined, w.to_f32_vector()) << "batch " << b;
  }
  const double sum = r0->evaluate(t.model(), *one->dp_cp) + r1->evaluate(t.model(), *one->dp_cp);
  EXPECT_NEAR(sum / 2, whole, 1e-6 * whole);
}

// The same under mpirun: dp2 graft train reports the eval loss of the one-process run.
TEST(Eval, UnderMpirunMatchesOneProcess) {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun not found";
  TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::string common =
      " --set " + kFraction + " --set eval.every=3 --set eval.batches=4 --set train.steps=3";
  TrainOptions opt = quiet();
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(d / "recipe.yaml", {kFraction, "eval.every=3", "eval.batches=4",
                                          "train.steps=3", "train.batch_size=4"}),
          opt)
      .run();
  const std::string graft = ::graft::test::graft_binary();
  const std::string cmd =
      "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 --mca btl "
      "self,vader,tcp -np 2 " +
      graft + " train --recipe " + (d / "recipe.yaml") + common +
      " --set train.batch_size=2 --metrics-out " + (d / "dp.jsonl") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
  const int status = ::pclose(p);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  const auto ref = read_jsonl(d / "ref.jsonl"), got = read_jsonl(d / "dp.jsonl");
  ASSERT_EQ(ref.back()["step"], 3);
  ASSERT_EQ(got.back()["step"], 3) << out;
  const double a = ref.back()["eval_loss"].get<double>(), b = got.back()["eval_loss"].get<double>();
  EXPECT_NEAR(b, a, 1e-6 * a) << out;
  EXPECT_NE(out.find("eval: 4 batches of 4 x 16 tokens"), std::string::npos) << out;
}

TEST(TensorBoard, Crc32cAndRecordFraming) {
  EXPECT_EQ(io::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(io::crc32c("", 0), 0u);
  if (!tensorboard_available()) GTEST_SKIP() << "built without protobuf";
  TempDir d;
  std::string path;
  {
    TensorBoardWriter w(d / "tb");
    w.scalars(7, {{"loss", 2.5}, {"lr", 1e-3}});
    path = w.path();
  }
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t at = 0;
  int records = 0;
  auto u32 = [&](size_t i) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k)
      v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + k])) << (8 * k);
    return v;
  };
  while (at < bytes.size()) {
    ASSERT_LE(at + 12, bytes.size());
    uint64_t len = 0;
    for (int k = 0; k < 8; ++k)
      len |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + k])) << (8 * k);
    EXPECT_EQ(u32(at + 8), io::masked_crc32c(bytes.data() + at, 8));
    ASSERT_LE(at + 12 + len + 4, bytes.size());
    EXPECT_EQ(u32(at + 12 + len), io::masked_crc32c(bytes.data() + at + 12, len));
    if (records == 0) {
      EXPECT_NE(bytes.substr(at + 12, len).find("brain.Event:2"), std::string::npos);
    }
    at += 12 + len + 4;
    ++records;
  }
  EXPECT_EQ(records, 2);
}

TEST(Plot, SvgHasAxesLegendAndBothSeries) {
  TempDir d;
  test::write_text(d / "m.jsonl",
                   "{\"step\":1,\"loss\":5.6}\n{\"step\":10,\"loss\":3.4,\"eval_loss\":3.5}\n"
                   "{\"step\":15,\"loss\":null}\n{\"step\":20,\"loss\":2.9,\"eval_loss\":3.0}\n");
  auto series = read_loss_series(d / "m.jsonl");
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].points.size(), 3u);
  EXPECT_EQ(series[1].points.size(), 2u);
  PlotOptions o;
  o.title = "a <title> & more";
  const std::string svg = render_svg(series, o);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("a &lt;title&gt; &amp; more"), std::string::npos);
  for (const char* s : {"id=\"series-loss\"", "id=\"series-eval_loss\"", ">train loss<",
                        ">eval loss<", ">step<", ">loss (nats/token)<", "</svg>"})
    EXPECT_NE(svg.find(s), std::string::npos) << s;
  // Points: 3 and 2 pairs.
  auto points_of = [&](const std::string& id) {
    const size_t at = svg.find("points=\"", svg.find(id)) + 8;
    const std::string p = svg.substr(at, svg.find('"', at) - at);
    return std::count(p.begin(), p.end(), ',');
  };
  EXPECT_EQ(points_of("series-loss"), 3);
  EXPECT_EQ(points_of("series-eval_loss"), 2);
  EXPECT_EQ(nice_ticks(0, 180, 8),
            (std::vector<double>{0, 20, 40, 60, 80, 100, 120, 140, 160, 180}));
  EXPECT_EQ(nice_ticks(1.9, 5.7, 6).front(), 2.0);
  test::write_text(d / "bad.jsonl", "{\"step\":1,\"loss\":5.6}\nnot json\n");
  const std::string m = test::input_error([&] { read_loss_series(d / "bad.jsonl"); });
  EXPECT_NE(m.find(d / "bad.jsonl:2: not a JSON object"), std::string::npos) << m;
}

}  // namespace
}  // namespace graft
