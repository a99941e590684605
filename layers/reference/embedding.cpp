#include "layers/reference/embedding.h"

#include "framework/registry/registry.h"
#include "kernels/embedding.h"
#include "layers/reference/common.h"

namespace graft {

Embedding::Embedding(const EmbeddingConfig& config, const std::string& type)
    : Module(type), config_(config) {
  GRAFT_INPUT_CHECK(config.vocab_size > 0 && config.hidden_size > 0, type,
                    ": vocab_size = ", config.vocab_size, ", hidden_size = ", config.hidden_size,
                    ", expected > 0");
  layers::check_params_dtype(type, config.params_dtype, config.device);
  add_parameter(
      "weight",
      Tensor::zeros({config.vocab_size, config.hidden_size}, config.params_dtype, config.device),
      /*decay=*/false);
}

Tensor Embedding::forward(const Tensor& ids, double scale) {
  GRAFT_INPUT_CHECK(ids.dtype() == DType::kI64 || ids.dtype() == DType::kI32, type(),
                    ": token ids must be i64 or i32, got ", ids.str());
  Tensor flat = ids.is_contiguous() ? ids : ids.contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(config_.hidden_size);
  const Tensor& w = parameter("weight")->value;
  Tensor out = Tensor::empty(out_shape, w.dtype(), flat.device());
  EmbeddingFwdParams p;
  p.ids = flat.raw();
  p.weight = w.raw();
  p.out = out.raw();
  p.n = flat.numel();
  p.vocab = config_.vocab_size;
  p.hidden = config_.hidden_size;
  p.scale = static_cast<float>(scale);
  p.ids_dtype = flat.dtype();
  p.dtype = w.dtype();
  p.device = flat.device();
  embedding_fwd(p);
  return out;
}

void Embedding::backward(const Tensor& dy, const Tensor& ids, double scale) {
  Tensor flat = ids.is_contiguous() ? ids : ids.contiguous();
  Tensor dy2 = layers::as_rows(dy, config_.hidden_size);
  GRAFT_CHECK(dy2.size(0) == flat.numel(), type(), ": dy ", dy.str(), " vs ids ", ids.str());
  EmbeddingBwdParams p;
  p.ids = flat.raw();
  p.dy = dy2.raw();
  p.dweight = static_cast<float*>(layers::grad_of(*parameter("weight")).raw());
  p.n = flat.numel();
  p.vocab = config_.vocab_size;
  p.hidden = config_.hidden_size;
  p.scale = static_cast<float>(scale);
  p.ids_dtype = flat.dtype();
  p.dtype = dy2.dtype();
  p.device = flat.device();
  embedding_bwd(p);
}

static Register<Embedding, EmbeddingConfig> reg_embedding("reference.embedding", "embedding",
                                                          [](const EmbeddingConfig& c) {
                                                            return std::make_unique<Embedding>(c);
                                                          });

}  // namespace graft
