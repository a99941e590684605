// Recipe parsing: typed sections, unknown/misplaced keys with file and line, wrong types,
// impossible values, --set overrides, resolved output and hash.
#include "framework/recipe/recipe.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::input_error;
using test::TempDir;

TEST(Recipe, MicroRecipeParsesIntoTypedSections) {
  TempDir d;
  Recipe r = test::micro(d.path());
  EXPECT_EQ(r.model.config.arch, "llama");
  EXPECT_EQ(r.model.config.hidden_size, 32);
  EXPECT_EQ(r.data.seq_len, 16);
  EXPECT_EQ(r.data.files.size(), 2u);
  EXPECT_EQ(r.train.steps, 6);
  EXPECT_DOUBLE_EQ(r.optim.lr, 1e-2);
  EXPECT_EQ(r.schedule.type, ScheduleType::kCosine);
  EXPECT_TRUE(r.device.is_cpu());
  EXPECT_EQ(r.model.overrides.size(), 0u);
}

TEST(Recipe, UnknownKeyNamesFileLineAndPath) {
  TempDir d;
  // "lrr" is on line 21 of the micro recipe (optim: is line 20).
  std::string text = test::micro_recipe(d.path());
  const size_t at = text.find("  lr: 1.0e-2\n");
  text.insert(at, "  lrr: 3\n");
  int line = 1;
  for (size_t i = 0; i < at; ++i) line += text[i] == '\n';
  test::write_text(d / "r.yaml", text);
  const std::string msg = input_error([&] { load_recipe(d / "r.yaml"); });
  EXPECT_NE(msg.find(str(d / "r.yaml", ":", line, ": optim.lrr")), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key"), std::string::npos) << msg;
}

TEST(Recipe, MisplacedKeyIsUnknownInItsSection) {
  TempDir d;
  const std::string msg =
      input_error([&] { test::micro(d.path(), {}, "checkpoint:\n  lr: 0.1\n"); });
  EXPECT_NE(msg.find("checkpoint.lr: unknown key"), std::string::npos) << msg;
}

TEST(Recipe, UnknownTopLevelSection) {
  TempDir d;
  const std::string msg = input_error([&] { test::micro(d.path(), {}, "optimizer:\n  lr: 1\n"); });
  EXPECT_NE(msg.find("optimizer: unknown key"), std::string::npos) << msg;
}

TEST(Recipe, WrongTypeNamesKeyValueAndExpectation) {
  TempDir d;
  std::string msg = input_error([&] { test::micro(d.path(), {"train.steps=ten"}); });
  EXPECT_NE(msg.find("--set train.steps=ten: train.steps = ten, expected an integer"),
            std::string::npos)
      << msg;
  msg = input_error([&] { test::micro(d.path(), {"optim.betas=0.9"}); });
  EXPECT_NE(msg.find("optim.betas = 0.9, expected a list"), std::string::npos) << msg;
  msg = input_error([&] { test::micro(d.path(), {"data=3"}); });
  EXPECT_NE(msg.find("data must be a mapping"), std::string::npos) << msg;
}

TEST(Recipe, WrongTypeInFileCarriesLine) {
  TempDir d;
  std::string text = test::micro_recipe(d.path());
  const size_t at = text.find("  steps: 6");
  text.replace(at, 10, "  steps: [1, 2]");
  int line = 1;
  for (size_t i = 0; i < at; ++i) line += text[i] == '\n';
  test::write_text(d / "r.yaml", text);
  const std::string msg = input_error([&] { load_recipe(d / "r.yaml"); });
  EXPECT_NE(msg.find(str(":", line, ": train.steps = a list, expected an integer")),
            std::string::npos)
      << msg;
}

TEST(Recipe, ImpossibleValues) {
  TempDir d;
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"train.batch_size=0"});
            }).find("train.batch_size = 0, expected a positive integer"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"schedule.warmup_steps=7"});
            }).find("schedule.warmup_steps = 7"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"schedule.type=step"});
            }).find("expected constant, cosine, linear or wsd"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"data.seq_len=65"});
            }).find("max_position_embeddings = 64"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"precision.params=f16"});
            }).find("precision.params = f16, expected f32 or bf16"),
            std::string::npos);
}

// precision.residual: bf16 | f32, default the params dtype; a bf16 stream needs bf16 params. It
// changes numerics, not state: outside the run's identity (a checkpoint resumes either way, and
// the hashes of recipes written before the key existed stay the same).
TEST(Recipe, ResidualPrecisionIsValidated) {
  TempDir d;
  const Recipe f32 = test::micro(d.path());
  EXPECT_EQ(f32.precision.residual, DType::kF32);
  EXPECT_EQ(f32.resolved["precision"]["residual"].as<std::string>(), "f32");
  EXPECT_FALSE(f32.precision.fp32_residual());
  const Recipe bf16 = test::micro(d.path(), {"precision.params=bf16"});
  EXPECT_EQ(bf16.precision.residual, DType::kBF16);
  EXPECT_FALSE(bf16.precision.fp32_residual());
  const Recipe wide = test::micro(d.path(), {"precision.params=bf16", "precision.residual=f32"});
  EXPECT_EQ(wide.precision.residual, DType::kF32);
  EXPECT_TRUE(wide.precision.fp32_residual());
  EXPECT_EQ(wide.config_hash(), bf16.config_hash());
  EXPECT_FALSE(test::micro(d.path(), {"precision.residual=f32"}).precision.fp32_residual());
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"precision.params=bf16", "precision.residual=f16"});
            }).find("precision.residual = f16, expected bf16 or f32"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"precision.residual=bf16"});
            }).find("precision.residual = bf16 needs precision.params = bf16"),
            std::string::npos);
}

TEST(Recipe, ParallelKeysAreValidated) {
  TempDir d;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"parallel.tp=0", "parallel.tp = 0, expected >= 1"},
      {"parallel.dp=-2", "parallel.dp = -2, expected >= 1"},
      {"parallel.pp=2", "parallel.pp = 2: pipeline parallelism is not supported"},
      {"parallel.zero=2", "parallel.zero = 2, expected 0 or 1"},
      {"parallel.order=dp-tp", "parallel.order = dp-tp, expected tp-cp-dp or tp-dp-cp"},
      {"parallel.backend=gloo", "parallel.backend = gloo, expected auto, nccl or mpi"},
      {"parallel.timeout_s=0", "parallel.timeout_s = 0, expected > 0"},
      {"parallel.sequence_parallel=true",
       "parallel.sequence_parallel = true needs parallel.tp > 1"},
      {"parallel.tpp=2", "parallel.tpp"},
  };
  for (const auto& [set, want] : cases) {
    const std::string msg = input_error([&] { test::micro(d.path(), {set}); });
    EXPECT_NE(msg.find(want), std::string::npos) << set << " -> " << msg;
  }
}

TEST(Recipe, LayoutIsNotPartOfTheRunIdentityButTheGlobalBatchIs) {
  TempDir d;
  Recipe a = test::micro(d.path(), {"parallel.dp=2", "train.batch_size=2"});
  Recipe b = test::micro(d.path(), {"parallel.dp=1", "parallel.zero=1", "train.batch_size=4"});
  EXPECT_EQ(a.config_hash(2), b.config_hash(1));
  EXPECT_NE(a.config_hash(2), a.config_hash(1));
  EXPECT_EQ(a.parallel.dp, 2);
  EXPECT_EQ(b.parallel.zero, 1);
}

TEST(Recipe, MissingDataFile) {
  TempDir d;
  const std::string msg =
      input_error([&] { test::micro(d.path(), {"data.text=[" + d.path() + "/nope/*.txt]"}); });
  EXPECT_NE(msg.find("data.text = '" + d.path() + "/nope/*.txt' matches no readable file"),
            std::string::npos)
      << msg;
  const std::string msg2 = input_error([&] {
    test::micro(d.path(), {"data.text=[]", "data.prepared=" + d.path() + "/none"});
  });
  EXPECT_NE(msg2.find("data.prepared"), std::string::npos) << msg2;
}

TEST(Recipe, UnwritableCheckpointFolder) {
  TempDir d;
  test::write_text(d / "file", "x");  // a file where a folder should go
  const std::string msg =
      input_error([&] { test::micro(d.path(), {"checkpoint.dir=" + (d / "file") + "/ckpt"}); });
  EXPECT_NE(msg.find("checkpoint.dir = '" + (d / "file") + "/ckpt' cannot be created or written"),
            std::string::npos)
      << msg;
}

TEST(Recipe, ModelConfigErrorsNameTheSection) {
  TempDir d;
  const std::string msg =
      input_error([&] { test::micro(d.path(), {"model.config.hidden_size=-3"}); });
  EXPECT_NE(msg.find("model.config"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
  const std::string both = input_error([&] { test::micro(d.path(), {"model.from=hf:/x"}); });
  EXPECT_NE(both.find("exactly one of model.from"), std::string::npos) << both;
}

TEST(Recipe, SetOverridesAnyKeyAndCreatesSections) {
  TempDir d;
  Recipe r = test::micro(d.path(), {"train.steps=9", "optim.betas=[0.8, 0.9]",
                                    "checkpoint.keep_last=1", "model.layers=te"});
  EXPECT_EQ(r.train.steps, 9);
  EXPECT_DOUBLE_EQ(r.optim.beta1, 0.8);
  EXPECT_EQ(r.checkpoint.keep_last, 1);
  ASSERT_EQ(r.model.overrides.size(), 1u);
  EXPECT_EQ(r.model.overrides[0].second, "te.transformer_layer");
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"train.steps.x=1"});
            }).find("train.steps is not a mapping"),
            std::string::npos);
  EXPECT_NE(input_error([&] { test::micro(d.path(), {"train.steps"}); }).find("key.path=value"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              test::micro(d.path(), {"trian.steps=3"});
            }).find("--set trian.steps=3: trian: unknown key"),
            std::string::npos);
}

TEST(Recipe, AttentionBackendKeyIsStrict) {
  TempDir d;
  EXPECT_EQ(test::micro(d.path()).model.config.attention, AttnBackend::kAuto);
  EXPECT_EQ(test::micro(d.path(), {"model.attention=unfused"}).model.config.attention,
            AttnBackend::kUnfused);
  const std::string bad = input_error([&] { test::micro(d.path(), {"model.attention=flash"}); });
  EXPECT_NE(bad.find("model.attention = 'flash': expected auto, cudnn or unfused"),
            std::string::npos)
      << bad;
  const std::string cpu = input_error([&] { test::micro(d.path(), {"model.attention=cudnn"}); });
  EXPECT_NE(cpu.find("model.attention = cudnn needs a CUDA device (device = cpu)"),
            std::string::npos)
      << cpu;
}

TEST(Recipe, ResolvedRecipeRoundTripsWithSameHash) {
  TempDir d;
  Recipe a = test::micro(d.path(), {"optim.lr=0.003"});
  EXPECT_NE(a.resolved_yaml().find("lr: 0.003\n"), std::string::npos) << a.resolved_yaml();
  test::write_text(d / "resolved.yaml", a.resolved_yaml());
  Recipe b = load_recipe(d / "resolved.yaml");
  EXPECT_EQ(a.config_hash(), b.config_hash());
  // Keys outside the run's identity do not change the hash; others do, and are named.
  Recipe c = test::micro(d.path(), {"optim.lr=0.003", "logging.every=5", "train.stop_after=2"});
  EXPECT_EQ(a.config_hash(), c.config_hash());
  Recipe e = test::micro(d.path(), {"optim.lr=0.004"});
  EXPECT_NE(a.config_hash(), e.config_hash());
  EXPECT_EQ(first_difference(a.identity(), e.identity()), "optim.lr");
}

// model.config is checked like every other key: a field the architecture does not read is an
// error naming file:line and the key path, with the closest known field.
TEST(Recipe, MisspeltModelConfigFieldNamesLineAndSuggests) {
  TempDir d;
  std::string text = test::micro_recipe(d.path());
  const size_t at = text.find("    num_key_value_heads: 2\n");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, std::string("    num_key_value_heads").size(), "    num_key_value_head");
  int line = 1;
  for (size_t i = 0; i < at; ++i) line += text[i] == '\n';
  test::write_text(d / "r.yaml", text);
  const std::string msg = input_error([&] { load_recipe(d / "r.yaml"); });
  EXPECT_NE(msg.find(str(d / "r.yaml", ":", line, ": model.config.num_key_value_head:")),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unknown field of the llama architecture"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean num_key_value_heads?"), std::string::npos) << msg;

  // From --set: the argument is named; a name close to nothing gets no suggestion.
  std::string m2 = input_error([&] { test::micro(d.path(), {"model.config.hiden_size=64"}); });
  EXPECT_NE(m2.find("--set model.config.hiden_size=64: model.config.hiden_size"), std::string::npos)
      << m2;
  EXPECT_NE(m2.find("did you mean hidden_size?"), std::string::npos) << m2;
  m2 = input_error([&] { test::micro(d.path(), {"model.config.flux_capacitor=1"}); });
  EXPECT_NE(m2.find("model.config.flux_capacitor: unknown field"), std::string::npos) << m2;
  EXPECT_EQ(m2.find("did you mean"), std::string::npos) << m2;
  // Fields that do not change the math are known.
  Recipe r = test::micro(
      d.path(), {"model.config.torch_dtype=float32", "model.config.transformers_version=\"4.46.0\"",
                 "model.config.use_cache=true", "model.config.pad_token_id=0"});
  EXPECT_EQ(r.model.config.hidden_size, 32);
}

TEST(Recipe, UnknownKeySuggestsTheClosest) {
  TempDir d;
  const std::string msg = input_error([&] { test::micro(d.path(), {"optim.weight_decy=0.1"}); });
  EXPECT_NE(msg.find("optim.weight_decy: unknown key (did you mean weight_decay?)"),
            std::string::npos)
      << msg;
}

TEST(Recipe, SampleSettings) {
  TempDir d;
  Recipe r = test::micro(d.path());
  EXPECT_DOUBLE_EQ(r.train.sample_temperature, 0.8);
  EXPECT_DOUBLE_EQ(r.train.sample_top_p, 0.95);
  Recipe g = test::micro(d.path(), {"train.sample_temperature=0", "train.sample_top_p=1"});
  EXPECT_DOUBLE_EQ(g.train.sample_temperature, 0.0);
  EXPECT_EQ(r.config_hash(), g.config_hash()) << "the end-of-run sample does not change training";
  std::string msg = input_error([&] { test::micro(d.path(), {"train.sample_top_p=0"}); });
  EXPECT_NE(msg.find("train.sample_top_p"), std::string::npos) << msg;
  msg = input_error([&] { test::micro(d.path(), {"train.sample_temperature=-1"}); });
  EXPECT_NE(msg.find("train.sample_temperature"), std::string::npos) << msg;
}

TEST(Recipe, ShippedRecipesParse) {
  const std::string dir = ::graft::test::source_root() + "/recipes";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    ++n;
    // Real-shape recipes target a GPU and keep checkpoints; parse them with a temp folder.
    TempDir d;
    Recipe r = load_recipe(e.path().string(), {"checkpoint.dir=" + (d / "ckpt")});
    EXPECT_GT(r.model.config.hidden_size, 0) << e.path();
    EXPECT_GT(r.train.steps, 0) << e.path();
  }
  EXPECT_GE(n, 6);
}

TEST(Recipe, ShippedShapesMatchTheirHfConfigs) {
  const std::string dir = ::graft::test::source_root() + "/recipes/";
  TempDir d;
  const std::vector<std::string> sets = {"checkpoint.dir=" + (d / "ckpt")};
  Recipe l1 = load_recipe(dir + "llama-3.2-1b.yaml", sets);
  EXPECT_EQ(l1.model.config.num_layers, 16);
  EXPECT_EQ(l1.model.config.decoder.num_kv_heads, 8);
  EXPECT_TRUE(l1.model.config.tie_word_embeddings);
  EXPECT_EQ(l1.model.config.decoder.rope.type, "llama3");
  Recipe g = load_recipe(dir + "gemma-2b.yaml", sets);
  EXPECT_EQ(g.model.config.decoder.head_dim, 256);
  EXPECT_EQ(g.model.config.decoder.num_kv_heads, 1);
  Recipe q = load_recipe(dir + "qwen3-0.6b.yaml", sets);
  EXPECT_TRUE(q.model.config.decoder.qk_norm);
  EXPECT_EQ(q.model.config.vocab_size, 151936);
  Recipe t = load_recipe(dir + "tiny-cpu.yaml");
  EXPECT_EQ(t.model.config.vocab_size, 258);
}

}  // namespace
}  // namespace graft
