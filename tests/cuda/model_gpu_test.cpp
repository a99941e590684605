// The whole model on one GPU: HF parity in f32 and bf16 through both layer sets, and the bf16
// training step (f32 master weights in AdamW, bf16 weights written back by the kernel).
// Skips without a GPU; the CPU-side contract (bf16 rejected on the CPU) runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "framework/model/hf_loader.h"
#include "framework/model/parity.h"
#include "framework/optim/adamw.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

using namespace cuda_test;

std::string fixture(const std::string& name) {
  return ::graft::test::source_root() + "/tests/fixtures/hf/" + name;
}

struct ParityCase {
  std::string fixture, layers;
  DType dtype;
};

std::string case_name(const ::testing::TestParamInfo<ParityCase>& i) {
  std::string f = i.param.fixture;
  for (char& c : f)
    if (c == '-') c = '_';
  return str(f, "_", i.param.layers, "_", dtype_name(i.param.dtype));
}

class GpuParity : public ::testing::TestWithParam<ParityCase> {};

// Tolerances: ParityTolerances::for_dtype (f32: the CPU's; bf16: justified in parity.h).
TEST_P(GpuParity, MatchesTransformers) {
  GRAFT_REQUIRE_CUDA();
  const ParityCase c = GetParam();
  ParityOptions o;
  o.checkpoint = fixture(c.fixture);
  o.device = gpu();
  o.layers = c.layers;
  o.dtype = c.dtype;
  const ParityResult r = run_parity(o);
  EXPECT_EQ(r.dtype, dtype_name(c.dtype));
  EXPECT_LE(r.logits_rel_err, r.tol.logits) << r.to_json().dump();
  EXPECT_LE(r.padded_logits_rel_err, r.tol.logits) << r.to_json().dump();
  EXPECT_LE(r.loss_abs_err, r.tol.loss) << r.to_json().dump();
  EXPECT_LE(r.grad_max_rel_err, r.tol.grads) << r.to_json().dump();
  EXPECT_LE(r.step1_max_rel_err, r.tol.grads) << r.to_json().dump();
  if (c.dtype == DType::kF32) EXPECT_TRUE(r.generate_match) << r.to_json().dump();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuParity,
                         ::testing::Values(ParityCase{"llama-gqa", "reference", DType::kF32},
                                           ParityCase{"llama-gqa", "te", DType::kF32},
                                           ParityCase{"llama-gqa", "reference", DType::kBF16},
                                           ParityCase{"llama-gqa", "te", DType::kBF16},
                                           ParityCase{"gemma-mqa", "reference", DType::kBF16},
                                           ParityCase{"gemma-mqa", "te", DType::kBF16},
                                           ParityCase{"qwen3-qknorm", "reference", DType::kBF16},
                                           ParityCase{"qwen3-qknorm", "te", DType::kBF16}),
                         case_name);

TEST(GpuModel, Bf16StepsF32MasterAndWritesRoundedWeights) {
  GRAFT_REQUIRE_CUDA();
  auto model = load_hf_model(fixture("llama-gqa"), {DType::kBF16, gpu()});
  model->allocate_grads();
  OptimConfig oc;
  oc.lr = 1e-2;
  AdamW optim(model->named_parameters(), oc);
  std::vector<int64_t> ids(2 * 16);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + 3) % 50);
  const Tensor t = Tensor::from_vector(ids, {2, 16});
  double first = 0, last = 0;
  for (int s = 0; s < 8; ++s) {
    model->zero_grad();
    last = model->forward_backward(t, t);
    if (s == 0) first = last;
    EXPECT_TRUE(std::isfinite(optim.grad_norm()));
    optim.step(oc.lr, 1.0);
  }
  EXPECT_LT(last, first - 0.5) << "memorising one batch must lower the loss";
  // Every bf16 weight is its f32 master rounded to nearest even (written by the AdamW kernel).
  int checked = 0;
  for (const auto& [name, master] : optim.state_tensors()) {
    if (name.rfind("master.", 0) != 0) continue;
    Parameter* p = nullptr;
    for (auto& [n, q] : model->named_parameters())
      if ("master." + n == name) p = q;
    ASSERT_NE(p, nullptr) << name;
    ASSERT_EQ(p->value.dtype(), DType::kBF16) << name;
    const std::vector<float> w = p->value.to_f32_vector();
    const std::vector<float> m = master.to(DType::kBF16).to_f32_vector();
    ASSERT_EQ(w, m) << name;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(model->named_parameters().size()));
}

TEST(GpuModel, Bf16IsRejectedOnTheCpu) {
  EXPECT_THROW(load_hf_model(fixture("llama-gqa"), {DType::kBF16, Device::cpu()}), InputError);
  ParityOptions o;
  o.checkpoint = fixture("llama-gqa");
  o.dtype = DType::kBF16;
  EXPECT_THROW(run_parity(o), InputError);
}

}  // namespace
}  // namespace graft
