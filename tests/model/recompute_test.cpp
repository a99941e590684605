// Activation recompute trades memory for time and must not change the math: with it on, the loss
// and every gradient are bit-identical to the saved-activation path (the layers are deterministic
// and recompute re-runs exactly the same forward), for both layer sets.
#include "framework/model/hf_export.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

TEST(ActivationRecompute, BitIdenticalLossAndGradients) {
  for (bool te : {false, true}) {
    SCOPED_TRACE(te ? "te" : "reference");
    auto a = test::tiny_model("qwen3", te, 5);
    auto b = test::tiny_model("qwen3", te, 5);
    b->set_activation_recompute(true);
    Tensor ids = test::token_ids(2, 7, a->config().vocab_size, 3);
    a->allocate_grads();
    b->allocate_grads();
    const double la = a->forward_backward(ids, ids), lb = b->forward_backward(ids, ids);
    EXPECT_EQ(la, lb);
    auto ga = export_hf_tensors(*a, HfExportSource::kGrads);
    auto gb = export_hf_tensors(*b, HfExportSource::kGrads);
    ASSERT_EQ(ga.size(), gb.size());
    for (size_t i = 0; i < ga.size(); ++i)
      EXPECT_TRUE(test::bit_equal(ga[i].second, gb[i].second)) << ga[i].first;
    // A non-trivial gradient, so equality is not 0 == 0.
    EXPECT_GT(test::rel_err(ga[1].second, Tensor::zeros(ga[1].second.shape(), DType::kF32)), 0.0);
  }
}

}  // namespace
}  // namespace graft
