// graft parity --fp8 delayed|current on every HF fixture (CPU, emulated FP8): logits within TE's
// FP8 tolerance (0.125 relative) and the loss within 0.05 (absolute) of transformers' f32
// reference, gradients within 0.25 (E5M2 gradients, see ParityTolerances::for_fp8); the figures
// are printed. The optimizer step from the reference gradients is not affected by FP8 (1e-3).
// And the command line: --fp8 without --layers te, or an unknown recipe, exits 2.
#include <gtest/gtest.h>

#include <cstdio>
#include <iostream>

#include "framework/model/parity.h"
#include "tests/model/test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

class Fp8Parity : public ::testing::TestWithParam<std::tuple<const char*, te::Fp8Recipe>> {};

TEST_P(Fp8Parity, MatchesTransformersWithinFp8Tolerances) {
  const auto [fixture, recipe] = GetParam();
  ParityOptions opt;
  opt.checkpoint = test::fixture_dir(fixture);
  opt.layers = "te";
  opt.fp8 = recipe;
  const ParityResult r = run_parity(opt);
  std::cout << "fp8 parity " << fixture << " " << r.fp8 << ": logits_rel_err " << r.logits_rel_err
            << ", padded " << r.padded_logits_rel_err << ", loss_abs_err " << r.loss_abs_err
            << ", grad_max_rel_err " << r.grad_max_rel_err << " (" << r.grad_worst << "), step1 "
            << r.step1_max_rel_err << ", generate_match " << r.generate_match << std::endl;
  SCOPED_TRACE(r.to_json().dump());
  EXPECT_EQ(r.fp8, te::fp8_recipe_name(recipe));
  EXPECT_LE(r.logits_rel_err, 0.125);
  EXPECT_LE(r.padded_logits_rel_err, 0.125);
  EXPECT_LE(r.loss_abs_err, 0.05);
  EXPECT_LE(r.grad_max_rel_err, 0.25);
  EXPECT_LE(r.step1_max_rel_err, 1e-3);
  // FP8 did run: f32 te layers match transformers to 1e-4.
  EXPECT_GT(r.logits_rel_err, 1e-3);
  EXPECT_TRUE(r.pass());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Fp8Parity,
    ::testing::Combine(::testing::Values("llama-gqa", "gemma-mqa", "qwen3-qknorm"),
                       ::testing::Values(te::Fp8Recipe::kDelayed, te::Fp8Recipe::kCurrent)),
    [](const auto& info) {
      std::string n =
          std::string(std::get<0>(info.param)) + "_" + te::fp8_recipe_name(std::get<1>(info.param));
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(Fp8ParityCli, PrintsTheRecipeAndRejectsBadOptions) {
  const std::string dir = test::fixture_dir("llama-gqa");
  auto r = test::run_command(test::graft_binary() + " parity --checkpoint " + dir +
                             " --layers te --fp8 current");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"fp8\":\"current\""), std::string::npos) << r.out;
  r = test::run_command(test::graft_binary() + " parity --checkpoint " + dir + " --fp8 delayed");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--fp8 delayed needs --layers te"), std::string::npos) << r.out;
  r = test::run_command(test::graft_binary() + " parity --checkpoint " + dir +
                        " --layers te --fp8 mxfp8");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--fp8 = 'mxfp8', expected none, delayed or current"), std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace graft
