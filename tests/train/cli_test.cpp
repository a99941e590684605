// The graft train / data / generate / export commands, run as processes: exit codes, one-line
// errors, and the files they leave.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "framework/model/hf_loader.h"
#include "framework/train/checkpoint.h"
#include "framework/train/checkpoint_model.h"
#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

using CmdResult = test::CommandResult;

CmdResult run(const std::string& args) {
  return test::run_command(test::graft_binary() + " " + args);
}

std::string recipe_file(const TempDir& d, const std::string& extra = "") {
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path(), extra));
  return d / "recipe.yaml";
}

TEST(Cli, BadRecipeIsOneLineAndExitCode2) {
  TempDir d;
  CmdResult r = run("train --recipe " + recipe_file(d, "bogus: 1\n"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find(d / "recipe.yaml:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bogus: unknown key"), std::string::npos) << r.out;
  CmdResult s = run("train --recipe " + recipe_file(d) + " --set train.steps=x");
  EXPECT_EQ(s.code, 2) << s.out;
  EXPECT_NE(s.out.find("--set train.steps=x: train.steps = x, expected an integer"),
            std::string::npos)
      << s.out;
  EXPECT_EQ(run("train --recipe " + (d / "missing.yaml")).code, 2);
  EXPECT_EQ(run("train --recipe " + recipe_file(d) + " --frobnicate").code, 2);
}

TEST(Cli, PrintConfigShowsTheResolvedRecipe) {
  TempDir d;
  CmdResult r = run("train --recipe " + recipe_file(d) + " --set optim.lr=0.005 --print-config");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("config hash"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lr: 0.005"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("warmup_steps: 2"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d / "cache")) << "print-config must not prepare data";
}

TEST(Cli, DataPrepareThenTrainGenerateExport) {
  TempDir d;
  test::write_text(d / "doc1.txt", test::sample_text(2500, 3));
  test::write_text(d / "doc2.txt", test::sample_text(2500, 4));
  CmdResult p =
      run("data prepare --input " + (d / "doc*.txt") + " --tokenizer byte --out " + (d / "tokens"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("prepared 2 documents"), std::string::npos) << p.out;
  EXPECT_TRUE(fs::is_regular_file(d / "tokens/meta.json"));

  std::string text = test::micro_recipe(d.path(), "checkpoint:\n  dir: " + (d / "ck") + "\n");
  const size_t a = text.find("  text: ["), b = text.find("  seq_len");
  text.replace(a, b - a, "  prepared: " + (d / "tokens") + "\n");
  test::write_text(d / "r.yaml", text);
  CmdResult t = run("train --recipe " + (d / "r.yaml") + " --set train.steps=4 --metrics-out " +
                    (d / "m.jsonl"));
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("step 4/4"), std::string::npos) << t.out;
  EXPECT_TRUE(fs::is_regular_file(d / "m.jsonl"));
  EXPECT_TRUE(is_complete_checkpoint(d / "ck/step-00000004"));

  CmdResult g = run("generate --checkpoint " + (d / "ck") + " --prompt the --max-new-tokens 6");
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_NE(g.out.find("ids: 257,116,104,101,"), std::string::npos) << g.out;
  // A batch from a file: one output per prompt, in order, each what that prompt gives alone.
  test::write_text(d / "prompts.txt", "of this\nthe\r\nyou may copy\n");
  CmdResult batch = run("generate --checkpoint " + (d / "ck") + " --prompts " +
                        (d / "prompts.txt") + " --max-new-tokens 6");
  ASSERT_EQ(batch.code, 0) << batch.out;
  std::vector<std::string> lines;
  for (size_t at = batch.out.find("ids: "); at != std::string::npos;
       at = batch.out.find("ids: ", at + 1))
    lines.push_back(batch.out.substr(at, batch.out.find('\n', at) - at));
  ASSERT_EQ(lines.size(), 3u) << batch.out;
  EXPECT_EQ(lines[1].rfind("ids: 257,116,104,101,", 0), 0u) << lines[1];
  EXPECT_NE(g.out.find(lines[1] + "\n"), std::string::npos) << g.out << "\n" << lines[1];
  EXPECT_EQ(lines[0].rfind("ids: 257,111,102,32,116,104,105,115", 0), 0u) << lines[0];
  CmdResult dev = run("generate --checkpoint " + (d / "ck") + " --prompt the --device tpu");
  EXPECT_EQ(dev.code, 2) << dev.out;
  EXPECT_NE(dev.out.find("--device = 'tpu'"), std::string::npos) << dev.out;
  CmdResult bad = run("generate --checkpoint " + (d / "ck") + " --prompt-ids 1,x");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("'x' is not a non-negative integer"), std::string::npos) << bad.out;
  EXPECT_EQ(run("generate --checkpoint " + (d / "nothing") + " --prompt-ids 1").code, 2);

  CmdResult e = run("export --checkpoint " + (d / "ck") + " --out " + (d / "hf"));
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_TRUE(fs::is_regular_file(d / "hf/config.json"));
  // The exported HF checkpoint loads back to the same logits as the native one.
  auto native = load_checkpoint_model(d / "ck/step-00000004");
  auto hf = load_hf_model(d / "hf");
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{257, 116, 104, 101, 32, 108}, {1, 6});
  EXPECT_EQ(native->forward(ids).to_f32_vector(), hf->forward(ids).to_f32_vector());
}

// Trained in (emulated) bf16, the working weights are the masters rounded to bf16; `graft
// export` writes the f32 masters themselves.
TEST(Cli, DataPrepareReadsJsonlReusesItsOutputAndNamesBadLines) {
  TempDir d;
  test::write_text(d / "a.jsonl", "{\"body\": \"one\"}\n{\"body\": \"two\"}\n");
  const std::string args =
      "data prepare --input " + (d / "a.jsonl") + " --field body --out " + (d / "tokens");
  CmdResult p = run(args);
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("prepared 2 documents"), std::string::npos) << p.out;
  p = run(args);
  EXPECT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("already prepared"), std::string::npos) << p.out;
  test::write_text(d / "bad.jsonl", "{\"body\": \"one\"}\n{\"body\": 3}\n");
  p = run("data prepare --input " + (d / "bad.jsonl") + " --field body --out " + (d / "t2"));
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_EQ(p.out, "graft data: " + (d / "bad.jsonl") + ":2: field 'body' is not a string\n");
}

TEST(Cli, ExportWritesTheMasterWeights) {
  TempDir d;
  CmdResult t = run("train --recipe " + recipe_file(d, "checkpoint:\n  dir: " + (d / "ck") + "\n") +
                    " --set train.steps=3 --set precision.params=bf16");
  ASSERT_EQ(t.code, 0) << t.out;
  CmdResult e = run("export --checkpoint " + (d / "ck") + " --out " + (d / "hf"));
  ASSERT_EQ(e.code, 0) << e.out;
  const std::string ckpt = d / "ck/step-00000003";
  ShardedReader r = ShardedReader::open(ckpt);
  auto exported = load_hf_model(d / "hf");
  int differ = 0;
  for (auto& [name, p] : exported->named_parameters()) {
    ASSERT_TRUE(r.has("optim/master/" + name)) << name;
    const std::vector<float> master = r.read("optim/master/" + name).to_f32_vector();
    EXPECT_EQ(p->value.to_f32_vector(), master) << name;
    if (r.read("model/" + name).to_f32_vector() != master) ++differ;
  }
  EXPECT_GT(differ, 0) << "the working copy should be the bf16-rounded masters";
}

}  // namespace
}  // namespace graft
