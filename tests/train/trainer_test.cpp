// The training loop on a micro Llama: exact resume, resume refusals, non-finite step skipping,
// metrics records, emulated bf16, generation with and without the KV cache.
#include "framework/train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/model/hf_export.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::TempDir;

TrainResult train(const Recipe& r, std::ostream* out = nullptr, TrainOptions opt = {}) {
  std::ostringstream sink;
  opt.out = out ? out : &sink;
  Trainer t(r, opt);
  return t.run();
}

TrainOptions quiet() {
  static std::ostringstream sink;
  TrainOptions opt;
  opt.out = &sink;
  return opt;
}

std::vector<double> losses(const TrainResult& r) {
  std::vector<double> l;
  for (const auto& s : r.steps) l.push_back(s.loss);
  return l;
}

TEST(Trainer, LossGoesDownOnTheMicroModel) {
  TempDir d;
  TrainResult r = train(test::micro(d.path(), {"train.steps=30"}));
  ASSERT_EQ(r.steps.size(), 30u);
  EXPECT_NEAR(r.steps.front().loss, std::log(258.0), 0.3);  // uniform over the vocabulary
  EXPECT_LT(r.steps.back().loss, r.steps.front().loss - 1.0);
  // Every step records what its attention kernels reported running (the CPU reference here).
  for (const auto& s : r.steps) EXPECT_EQ(s.attention, "cpu");
}

// 2N steps in one go equal N steps, a stop, a resume from the checkpoint and N more: bit for bit.
TEST(Trainer, ResumeIsExact) {
  TempDir d;
  const std::vector<std::string> base = {"train.steps=8", "optim.grad_clip=0.5"};
  TrainResult full = train(test::micro(d.path(), base));
  ASSERT_EQ(full.steps.size(), 8u);

  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> s = base;
    s.push_back("checkpoint.dir=" + (d / "ck"));
    s.insert(s.end(), extra.begin(), extra.end());
    return test::micro(d.path(), s);
  };
  TrainResult first = train(with({"train.stop_after=4"}));
  ASSERT_EQ(first.steps.size(), 4u);
  EXPECT_EQ(first.last_checkpoint, d / "ck/step-00000004");
  TrainResult second = train(with({}));
  EXPECT_EQ(second.resumed_from, d / "ck/step-00000004");
  ASSERT_EQ(second.steps.size(), 4u);
  EXPECT_EQ(second.steps.front().step, 5);
  std::vector<double> joined = losses(first);
  for (double l : losses(second)) joined.push_back(l);
  EXPECT_EQ(joined, losses(full));  // exact equality: same arithmetic in the same order
  EXPECT_EQ(read_trainer_state(second.last_checkpoint).step, 8);
}

// The checkpoint of a stopped run rewritten as if three ranks had saved it (matrices split on
// dim 1 like row-parallel weights, vectors in ZeRO-style flat thirds, the last one short):
// resuming from it at one rank continues with exactly the losses of the uninterrupted run.
// Emulated bf16, so the f32 masters are pieces of their own.
TEST(Trainer, ResumeFromAnotherLayoutIsExact) {
  TempDir d;
  const std::vector<std::string> base = {"train.steps=6", "precision.params=bf16"};
  TrainResult full = train(test::micro(d.path(), base));
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> s = base;
    s.push_back("checkpoint.dir=" + (d / "ck"));
    s.insert(s.end(), extra.begin(), extra.end());
    return test::micro(d.path(), s);
  };
  TrainResult first = train(with({"train.stop_after=3"}));
  const std::string ckpt = first.last_checkpoint;
  const ShardedReader saved = ShardedReader::open(ckpt);
  ASSERT_TRUE(saved.has("optim/master/embed_tokens.weight"));
  constexpr int kWorld = 3;
  std::vector<std::vector<TensorPiece>> pieces(kWorld);
  for (const std::string& name : saved.names()) {
    const Tensor t = saved.read(name);
    for (int r = 0; r < kWorld; ++r) {
      TensorPiece p = whole_piece(name, t);
      if (t.ndim() == 2) {
        const int64_t cols = t.size(1), begin = cols * r / kWorld, end = cols * (r + 1) / kWorld;
        p.box_offset = {0, begin};
        p.box_shape = {t.size(0), end - begin};
        p.data = t.slice(1, begin, end - begin).contiguous();
      } else {
        const int64_t shard = (t.numel() + kWorld - 1) / kWorld;
        p.flat_offset = std::min(t.numel(), shard * r);
        p.flat_len = std::min(t.numel(), shard * (r + 1)) - p.flat_offset;
        p.data = t.view({t.numel()}).slice(0, p.flat_offset, p.flat_len).contiguous();
      }
      pieces[r].push_back(p);
    }
  }
  for (const char* f : {"rank-00000.json", "rank-00000.safetensors", "manifest.json"})
    std::filesystem::remove(ckpt + "/" + f);
  for (int r = 0; r < kWorld; ++r) write_rank_pieces(ckpt, r, pieces[r]);
  write_manifest(ckpt, kWorld);
  ASSERT_TRUE(is_complete_checkpoint(ckpt));

  TrainResult second = train(with({}));
  EXPECT_EQ(second.resumed_from, ckpt);
  std::vector<double> joined = losses(first);
  for (double l : losses(second)) joined.push_back(l);
  EXPECT_EQ(joined, losses(full));
}

TEST(Trainer, ResumeWithAChangedConfigNamesTheKey) {
  TempDir d;
  const std::string ck = "checkpoint.dir=" + (d / "ck");
  train(test::micro(d.path(), {ck, "train.stop_after=2"}));
  std::string msg;
  try {
    Trainer t(test::micro(d.path(), {ck, "optim.lr=0.02"}), quiet());
  } catch (const InputError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("cannot resume from " + (d / "ck/step-00000002")), std::string::npos) << msg;
  EXPECT_NE(msg.find("first difference at key 'optim.lr'"), std::string::npos) << msg;
  // Another model shape is a changed config too, named by its key.
  try {
    Trainer t(test::micro(d.path(), {ck, "model.config.hidden_size=48"}), quiet());
    msg.clear();
  } catch (const InputError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("model.config.hidden_size"), std::string::npos) << msg;
  // resume: none starts fresh even though checkpoints exist.
  Trainer fresh(test::micro(d.path(), {ck, "optim.lr=0.02", "checkpoint.resume=none"}), quiet());
  EXPECT_EQ(fresh.state().step, 0);
}

struct Snapshot {
  std::vector<std::vector<float>> params, state;
  static Snapshot take(CausalLM& m, AdamW& o) {
    Snapshot s;
    for (auto& [n, p] : m.named_parameters()) s.params.push_back(p->value.to_f32_vector());
    for (auto& [n, t] : o.state_tensors()) s.state.push_back(t.to_f32_vector());
    return s;
  }
};

TEST(Trainer, NonFiniteStepIsSkippedWithoutTouchingState) {
  TempDir d;
  TrainOptions opt;
  opt.metrics_out = d / "metrics.jsonl";
  Snapshot before;
  Trainer* self = nullptr;
  opt.after_backward = [&](int64_t step, CausalLM& m) {
    if (step != 3) return;
    before = Snapshot::take(m, self->optimizer());
    auto params = m.named_parameters();
    params[1].second->grad.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  };
  std::ostringstream out;
  opt.out = &out;
  Trainer t(test::micro(d.path(), {"train.steps=4"}), opt);
  self = &t;
  TrainResult r = t.run();
  ASSERT_EQ(r.steps.size(), 4u);
  EXPECT_TRUE(r.steps[3].skipped);
  EXPECT_FALSE(r.steps[2].skipped);
  EXPECT_TRUE(std::isnan(r.steps[3].grad_norm));
  Snapshot after = Snapshot::take(t.model(), t.optimizer());
  EXPECT_EQ(before.params, after.params);
  EXPECT_EQ(before.state, after.state);
  EXPECT_EQ(t.optimizer().steps_taken(), 3);
  EXPECT_EQ(t.state().skipped_total, 1);
  EXPECT_NE(out.str().find("SKIPPED (non-finite)"), std::string::npos) << out.str();
  // The metrics file has one record per logged step with the contract's fields.
  std::ifstream f(opt.metrics_out);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "skipped"})
      EXPECT_TRUE(j.contains(k)) << k << " in " << line;
    EXPECT_EQ(j["step"].get<int>(), ++n);
    EXPECT_EQ(j["skipped"].get<bool>(), n == 4);
  }
  EXPECT_EQ(n, 4);
}

TEST(Trainer, TooManyConsecutiveSkipsStopTheRun) {
  TempDir d;
  TrainOptions opt;
  opt.after_backward = [](int64_t, CausalLM& m) {
    m.named_parameters()[0].second->grad.data<float>()[0] = INFINITY;
  };
  std::string msg;
  try {
    train(test::micro(d.path(), {"train.max_consecutive_skips=2"}), nullptr, opt);
  } catch (const InputError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("training stopped at step 3 after 3 consecutive non-finite steps"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("train.max_consecutive_skips = 2"), std::string::npos) << msg;
}

TEST(Trainer, EmulatedBf16KeepsWeightsOnTheBf16GridAndTrains) {
  TempDir d;
  TrainOptions opt = quiet();
  Trainer t(test::micro(d.path(), {"precision.params=bf16", "train.steps=10"}), opt);
  TrainResult r = t.run();
  for (auto& [name, p] : t.model().named_parameters())
    for (float x : p->value.to_f32_vector()) ASSERT_EQ(x, bf16_to_f32(f32_to_bf16(x))) << name;
  EXPECT_LT(r.steps.back().loss, r.steps.front().loss);
}

TEST(Trainer, GradAccumulationMatchesTheLargerBatchLoss) {
  TempDir d;
  // Same sequences: batch 4 x 1 micro-batch vs batch 2 x 2 micro-batches (the sampler hands out
  // consecutive global sequences), so the first step's loss is the same mean.
  const std::string w = "schedule.warmup_steps=0";
  TrainResult a = train(test::micro(d.path(), {w, "train.steps=1", "train.batch_size=4"}));
  TrainResult b = train(
      test::micro(d.path(), {w, "train.steps=1", "train.batch_size=2", "train.grad_accum=2"}));
  EXPECT_NEAR(a.steps[0].loss, b.steps[0].loss, 1e-6);
  EXPECT_NEAR(a.steps[0].grad_norm, b.steps[0].grad_norm, 1e-4 * a.steps[0].grad_norm);
}

TEST(Generate, KvCacheMatchesUncachedGreedy) {
  TempDir d;
  TrainOptions opt = quiet();
  Trainer t(test::micro(d.path(), {"train.steps=15"}), opt);
  t.run();
  GenerateOptions g;
  g.max_new_tokens = 20;
  const std::vector<int64_t> prompt = {257, 't', 'h', 'e', ' '};
  g.use_cache = true;
  auto cached = t.model().generate(prompt, g);
  g.use_cache = false;
  auto uncached = t.model().generate(prompt, g);
  ASSERT_EQ(cached.size(), prompt.size() + 20);
  EXPECT_EQ(cached, uncached);
}

// The end-of-run sample is drawn (temperature 0.8, top-p 0.95) with the seed train.seed: the same
// seed gives the same text; temperature 0 is greedy.
TEST(Trainer, EndOfRunSampleIsSeeded) {
  TempDir d;
  auto run = [&](std::vector<std::string> sets, std::string* log) {
    sets.push_back("train.steps=3");
    sets.push_back("train.sample_tokens=12");
    std::ostringstream out;
    TrainResult r = train(test::micro(d.path(), sets), &out);
    *log = out.str();
    return r.sample;
  };
  std::string log;
  const std::string a = run({}, &log);
  EXPECT_NE(log.find("sample (temperature 0.8, top-p 0.95, seed 0): "), std::string::npos) << log;
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(run({}, &log), a);
  run({"train.sample_temperature=0"}, &log);
  EXPECT_NE(log.find("sample (greedy): "), std::string::npos) << log;
  run({"train.seed=5", "train.sample_top_p=0.5"}, &log);
  EXPECT_NE(log.find("sample (temperature 0.8, top-p 0.5, seed 5): "), std::string::npos) << log;
}

TEST(Progress, LiveLineOnATerminalPlainLinesOtherwise) {
  StepMetrics m;
  m.step = 1;
  m.total = 2;
  m.loss = 3.25;
  m.lr = 1e-3;
  m.grad_norm = 0.5;
  m.tokens_per_s = 12345;
  m.eta_s = 65;
  std::ostringstream live, plain;
  {
    ProgressLog a(live, true, ""), b(plain, false, "");
    a.log(m);
    b.log(m);
    m.step = 2;
    a.log(m);
    b.log(m);
  }
  EXPECT_EQ(plain.str(),
            "step 1/2 | loss 3.2500 | lr 1.00e-03 | gnorm 0.500 | 12.3k tok/s | ETA 1m05s\n"
            "step 2/2 | loss 3.2500 | lr 1.00e-03 | gnorm 0.500 | 12.3k tok/s | ETA 1m05s\n");
  EXPECT_EQ(
      live.str(),
      "\rstep 1/2 | loss 3.2500 | lr 1.00e-03 | gnorm 0.500 | 12.3k tok/s | ETA 1m05s\x1b[K"
      "\rstep 2/2 | loss 3.2500 | lr 1.00e-03 | gnorm 0.500 | 12.3k tok/s | ETA 1m05s\x1b[K\n");
  EXPECT_EQ(format_duration(3725), "1h02m");
  EXPECT_EQ(format_duration(9), "9s");
}

// model.from: hf:DIR starts from the checkpoint's weights (here one exported from a trained run).
TEST(Trainer, StartsFromAnHfCheckpoint) {
  TempDir d;
  TrainOptions opt = quiet();
  Trainer a(test::micro(d.path(), {"train.steps=5"}), opt);
  a.run();
  export_hf_checkpoint(a.model(), d / "hf");
  Recipe r =
      test::micro(d.path(), {"train.steps=2", "model.config=null", "model.from=hf:" + (d / "hf")});
  EXPECT_EQ(r.model.hf_dir, d / "hf");
  Trainer b(r, opt);
  auto pa = a.model().named_parameters(), pb = b.model().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_f32_vector(), pb[i].second->value.to_f32_vector())
        << pa[i].first;
  const std::string msg = test::input_error([&] {
    test::micro(d.path(), {"model.config=null", "model.from=hf:" + (d / "nothing")});
  });
  EXPECT_NE(msg.find("model.from = 'hf:" + (d / "nothing") + "'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace graft
