#include "layers/reference/embedding.h"

#include "framework/registry/registry.h"
#include "kernels/embedding.h"
#include "layers/reference/common.h"
#include "parallel/tp_collectives.h"

namespace graft {

Embedding::Embedding(const EmbeddingConfig& config, const std::string& type)
    : Embedding(config, local_context(config), type) {}

Embedding::Embedding(const EmbeddingConfig& config, const BuildContext& ctx,
                     const std::string& type)
    : Module(type), config_(config), tp_(ctx.groups->tp) {
  GRAFT_INPUT_CHECK(config.vocab_size > 0 && config.hidden_size > 0, type,
                    ": vocab_size = ", config.vocab_size, ", hidden_size = ", config.hidden_size,
                    ", expected > 0");
  layers::check_params_dtype(type, config.params_dtype, config.device);
  shard_ = vocab_shard(config.vocab_size, *tp_, type);
  const int64_t H = config.hidden_size;
  ShardSpec spec = ShardSpec::replicated({config.vocab_size, H});
  if (tp_->size() > 1) {
    spec = tp_split_spec({shard_.padded, H}, 0, shard_.start);
    spec.logical_shape = {config.vocab_size, H};
  }
  add_parameter("weight", Tensor::zeros({shard_.rows, H}, config.params_dtype, config.device),
                /*decay=*/false, spec);
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
  p.vocab = shard_.rows;
  p.hidden = config_.hidden_size;
  if (tp_->size() > 1) {
    p.vocab_start = shard_.start;
    p.vocab_total = config_.vocab_size;
  }
  p.scale = static_cast<float>(scale);
  p.ids_dtype = flat.dtype();
  p.dtype = w.dtype();
  p.device = flat.device();
  embedding_fwd(p);
  if (tp_->size() == 1) return out;
  return config_.sequence_parallel ? reduce_scatter_to_sp(out, *tp_) : reduce_from_tp(out, *tp_);
}

void Embedding::backward(const Tensor& dy_in, const Tensor& ids, double scale) {
  Tensor flat = ids.is_contiguous() ? ids : ids.contiguous();
  const bool sp = tp_->size() > 1 && config_.sequence_parallel;
  Tensor dy = sp ? reduce_scatter_to_sp_backward(dy_in, *tp_) : dy_in;
  Tensor dy2 = layers::as_rows(dy, config_.hidden_size);
  GRAFT_CHECK(dy2.size(0) == flat.numel(), type(), ": dy ", dy.str(), " vs ids ", ids.str());
  EmbeddingBwdParams p;
  p.ids = flat.raw();
  p.dy = dy2.raw();
  // A scatter-add: a stale gradient is zeroed first (unless a tied LM head wrote it already).
  p.dweight = static_cast<float*>(layers::grad_of(*parameter("weight")).raw());
  p.n = flat.numel();
  p.vocab = shard_.rows;
  p.hidden = config_.hidden_size;
  if (tp_->size() > 1) {
    p.vocab_start = shard_.start;
    p.vocab_total = config_.vocab_size;
  }
  p.scale = static_cast<float>(scale);
  p.ids_dtype = flat.dtype();
  p.dtype = dy2.dtype();
  p.device = flat.device();
  embedding_bwd(p);
}

static Register<Embedding, EmbeddingConfig> reg_embedding(
    "reference.embedding", "embedding", [](const EmbeddingConfig& c, const BuildContext& ctx) {
      return std::make_unique<Embedding>(c, ctx);
    });

}  // namespace graft
