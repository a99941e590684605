// graft parity on the three HF fixtures with both layer sets (the command's thresholds), and the
// command-line contract (one JSON line, exit codes).
#include "framework/model/parity.h"

#include <array>
#include <cstdio>
#include <filesystem>

#include "framework/io/safetensors.h"
#include "tests/model/test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

struct Case {
  const char* fixture;
  const char* arch;
  const char* layers;
};

class Parity : public ::testing::TestWithParam<Case> {};

TEST_P(Parity, MatchesTransformers) {
  const Case c = GetParam();
  ParityOptions opt;
  opt.checkpoint = test::fixture_dir(c.fixture);
  opt.layers = c.layers;
  const ParityResult r = run_parity(opt);
  SCOPED_TRACE(r.to_json().dump());
  EXPECT_EQ(r.arch, c.arch);
  EXPECT_LE(r.logits_rel_err, 1e-4);
  EXPECT_LE(r.padded_logits_rel_err, 1e-4);
  EXPECT_LE(r.loss_abs_err, 1e-5);
  EXPECT_LE(r.grad_max_rel_err, 1e-3);
  EXPECT_LE(r.step1_max_rel_err, 1e-3);
  EXPECT_TRUE(r.generate_match);
  EXPECT_EQ(r.generated.size(), 13u);
  EXPECT_TRUE(r.pass());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Parity,
    ::testing::Values(Case{"llama-gqa", "llama", "reference"}, Case{"llama-gqa", "llama", "te"},
                      Case{"gemma-mqa", "gemma", "reference"}, Case{"gemma-mqa", "gemma", "te"},
                      Case{"qwen3-qknorm", "qwen3", "reference"},
                      Case{"qwen3-qknorm", "qwen3", "te"}),
    [](const auto& info) {
      std::string n = std::string(info.param.fixture) + "_" + info.param.layers;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

// The checkpoints of tests/model/fixtures (written by transformers, see its README).
class ExtraParity : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(ExtraParity, MatchesTransformers) {
  const auto [fixture, layers] = GetParam();
  ParityOptions opt;
  opt.checkpoint = ::graft::test::source_root() + "/tests/model/fixtures/" + fixture;
  opt.layers = layers;
  const ParityResult r = run_parity(opt);
  SCOPED_TRACE(r.to_json().dump());
  EXPECT_LE(r.logits_rel_err, 1e-4);
  EXPECT_LE(r.padded_logits_rel_err, 1e-4);
  EXPECT_LE(r.loss_abs_err, 1e-5);
  EXPECT_LE(r.grad_max_rel_err, 1e-3);
  EXPECT_LE(r.step1_max_rel_err, 1e-3);
  EXPECT_EQ(r.step1_grads, "reference");
  EXPECT_TRUE(r.generate_match);
  EXPECT_TRUE(r.pass());
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, ExtraParity,
                         ::testing::Combine(::testing::Values("mistral-window", "qwen2-bias-tied",
                                                              "llama3-rope-mlpbias-mha",
                                                              "llama-linear-rope", "qwen3-window",
                                                              "gemma-mha"),
                                            ::testing::Values("reference", "te")),
                         [](const auto& info) {
                           std::string n =
                               std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Runs a shell command; returns (exit code, stdout).
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

TEST(ParityCli, PrintsOneJsonLine) {
  auto [rc, out] =
      run(test::graft_binary() + " parity --checkpoint " + test::fixture_dir("qwen3-qknorm"));
  EXPECT_EQ(rc, 0) << out;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  for (const char* k :
       {"arch", "layers", "device", "logits_rel_err", "loss_abs_err", "grad_max_rel_err",
        "step1_max_rel_err", "padded_logits_rel_err", "generate_match", "tolerances"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["arch"], "qwen3");
  EXPECT_EQ(j["layers"], "reference");
  EXPECT_EQ(j["device"], "cpu");
}

TEST(ParityCli, BadInputExitsTwo) {
  const std::string dir = test::fixture_dir("llama-gqa");
  auto [rc, out] =
      run(test::graft_binary() + " parity --checkpoint " + dir + " --layers fast 2>&1");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--layers"), std::string::npos) << out;

  // A reference file without most of its tensors: one error naming them.
  test::TempDir d;
  write_safetensors(d.sub("ref.safetensors"),
                    {{"input_ids", Tensor::from_vector(std::vector<int64_t>{1, 2}, {1, 2})}});
  std::tie(rc, out) = run(test::graft_binary() + " parity --checkpoint " + dir + " --reference " +
                          d.sub("ref.safetensors") + " 2>&1");
  EXPECT_EQ(rc, 2) << out;
  for (const char* k : {"missing tensors", "logits", "generate_ids", "grad.lm_head.weight",
                        "step1.model.layers.1.mlp.down_proj.weight"})
    EXPECT_NE(out.find(k), std::string::npos) << k << " not in " << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

}  // namespace
}  // namespace graft
