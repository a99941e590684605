// precision.residual: f32 (BuildContext::fp32_residual) on the CPU, where the parameters are f32:
// the residual stream is f32 already, so every architecture and both layer sets give bit for bit
// today's loss and gradients (the f32 stream's accuracy with bf16 parameters is checked on the
// GPU: tests/cuda/residual_gpu_test.cpp; the kernels on the CPU: tests/kernels/
// norm_residual_test.cpp).
#include "framework/model/hf_export.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

TEST(Fp32Residual, WithF32ParametersEveryArchitectureIsUnchanged) {
  for (const char* arch : {"llama", "gemma", "qwen2", "qwen3", "mistral"}) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(str(arch, te ? " te" : " reference"));
      const ModelConfig c = test::tiny_config(arch);
      BuildContext ctx = local_context(c.decoder);
      ctx.fp32_residual = true;
      auto a = test::with_layers(te, c, [&] { return build_model(c); });
      auto b = test::with_layers(te, c, [&] { return build_model(c, ctx); });
      EXPECT_FALSE(b->config().decoder.fp32_residual);  // f32 parameters: nothing to widen
      a->init_weights(7);
      b->init_weights(7);
      b->set_activation_recompute(true);  // the saved layer inputs are the stream too
      Tensor ids = test::token_ids(2, 6, c.vocab_size, 3);
      a->allocate_grads();
      b->allocate_grads();
      const double la = a->forward_backward(ids, ids), lb = b->forward_backward(ids, ids);
      EXPECT_EQ(la, lb);
      auto ga = export_hf_tensors(*a, HfExportSource::kGrads);
      auto gb = export_hf_tensors(*b, HfExportSource::kGrads);
      ASSERT_EQ(ga.size(), gb.size());
      for (size_t i = 0; i < ga.size(); ++i)
        EXPECT_TRUE(test::bit_equal(ga[i].second, gb[i].second)) << ga[i].first;
      EXPECT_GT(test::rel_err(ga[1].second, Tensor::zeros(ga[1].second.shape(), DType::kF32)), 0.0);
    }
  }
}

// A decoder layer with fp32_residual and f32 parameters takes and returns the f32 stream and
// computes what the plain layer computes.
TEST(Fp32Residual, DecoderLayerWithF32ParametersIsThePlainLayer) {
  for (bool te : {false, true}) {
    SCOPED_TRACE(te ? "te" : "reference");
    ModelConfig c = test::tiny_config("llama");
    c.decoder.hidden_size = c.hidden_size;
    DecoderConfig wide = c.decoder;
    wide.fp32_residual = true;
    EXPECT_EQ(wide.residual_dtype(), DType::kF32);
    const std::string name = te ? "te.transformer_layer" : "llama.decoder_layer";
    auto make = [&](const DecoderConfig& dc) {
      return Registry::global().create<DecoderLayer, DecoderConfig>(name, dc, local_context(dc));
    };
    auto a = make(c.decoder), b = make(wide);
    auto pa = a->named_parameters(), pb = b->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t k = 0; k < pa.size(); ++k) {
      Tensor& v = pa[k].second->value;
      std::vector<float> vals(static_cast<size_t>(v.numel()));
      for (size_t i = 0; i < vals.size(); ++i)
        vals[i] = 0.01f * static_cast<float>((i * 37 + k) % 41) - 0.2f;
      v.copy_from(Tensor::from_vector(vals, v.shape()));
      pb[k].second->value.copy_from(v);
    }
    AttentionInputs in;
    in.batch = 1;
    in.seq = 4;
    in.positions = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {1, 4});
    std::vector<float> xv(4 * c.hidden_size);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.3f * static_cast<float>(i));
    Tensor x = Tensor::from_vector(xv, {1, 4, c.hidden_size});
    EXPECT_TRUE(test::bit_equal(a->forward(x, in, nullptr), b->forward(x, in, nullptr)));
  }
}

}  // namespace
}  // namespace graft
