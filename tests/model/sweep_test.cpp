// One sweep over every registered architecture at tiny size (its tiny_config()): the reference
// and TE decoder layers agree (logits, padded logits, loss, gradients in HF space), and
// export -> load is bit-exact with both layer sets.
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

// Both layer sets compute the same f32 math in a different order (fused GEMMs): agreement to
// ~1e-6 relative is expected; 1e-5 (logits) and 1e-4 (gradients) leave room for accumulation
// order without hiding a wrong layout, which gives O(1) errors.
constexpr double kLogitsTol = 1e-5, kGradTol = 1e-4, kLossTol = 1e-6;

TEST(ArchitectureSweep, ReferenceAndTeLayersAgree) {
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto ref = test::tiny_model(arch, false, 3);
    auto te = test::tiny_model(arch, true, 3);
    ASSERT_EQ(te->decoder_layer_types(), std::vector<std::string>{"te.transformer_layer"});
    // Same seed, same HF-space weights.
    auto wr = export_hf_tensors(*ref), wt = export_hf_tensors(*te);
    ASSERT_EQ(wr.size(), wt.size());
    for (size_t i = 0; i < wr.size(); ++i) {
      ASSERT_EQ(wr[i].first, wt[i].first) << "export order is canonical";
      EXPECT_TRUE(test::bit_equal(wr[i].second, wt[i].second)) << wr[i].first;
    }

    const int64_t V = ref->config().vocab_size;
    Tensor ids = test::token_ids(2, 9, V, 17);
    std::vector<int64_t> mask(18, 1);
    for (int s = 6; s < 9; ++s) mask[9 + s] = 0;
    Tensor m = Tensor::from_vector(mask, {2, 9});
    EXPECT_LE(test::rel_err(te->forward(ids), ref->forward(ids)), kLogitsTol);
    EXPECT_LE(test::rel_err(te->forward(ids, m), ref->forward(ids, m)), kLogitsTol);

    ref->allocate_grads();
    te->allocate_grads();
    const double lr = ref->forward_backward(ids, ids), lt = te->forward_backward(ids, ids);
    EXPECT_NEAR(lt, lr, kLossTol);
    EXPECT_GT(lr, 0.5 * std::log(static_cast<double>(V)));  // a real loss, not 0
    auto gr = export_hf_tensors(*ref, HfExportSource::kGrads);
    auto gt = export_hf_tensors(*te, HfExportSource::kGrads);
    ASSERT_EQ(gr.size(), gt.size());
    for (size_t i = 0; i < gr.size(); ++i)
      EXPECT_LE(test::rel_err(gt[i].second, gr[i].second), kGradTol) << gr[i].first;
  }
}

TEST(ArchitectureSweep, ExportLoadRoundTrip) {
  for (const std::string& arch : architecture_names()) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(arch + (te ? " te" : " reference"));
      auto a = test::tiny_model(arch, te, 9);
      test::TempDir d;
      export_hf_checkpoint(*a, d.path, {.max_shard_bytes = 2048, .dtype = DType::kF32});
      const ModelConfig c = load_hf_config(d.sub("config.json"));
      auto b = test::with_layers(te, c, [&] { return load_hf_model(d.path); });
      auto pa = a->named_parameters(), pb = b->named_parameters();
      ASSERT_EQ(pa.size(), pb.size());
      for (size_t i = 0; i < pa.size(); ++i)
        EXPECT_TRUE(test::bit_equal(pa[i].second->value, pb[i].second->value)) << pa[i].first;
      Tensor ids = test::token_ids(1, 7, c.vocab_size, 5);
      EXPECT_TRUE(test::bit_equal(a->forward(ids), b->forward(ids)));
    }
  }
}

}  // namespace
}  // namespace graft
