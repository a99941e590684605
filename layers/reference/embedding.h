// Reference token embedding (HF nn.Embedding, with Gemma's optional output scale).
//
//   weight: [vocab_size, hidden_size]
//   forward:  y[b, s, :] = weight[ids[b, s], :] · scale          ids i64 [B, S] -> y [B, S, H]
//   backward: weight.grad[ids[b, s], :] += dy[b, s, :] · scale    (accumulated)
//
// An id outside [0, vocab_size) is an InputError naming the id.
//
// Vocab-parallel (a tp group of T > 1 in the build context): the vocabulary is padded to a
// multiple of T and rank r holds rows [r·Vp/T, (r+1)·Vp/T) (parallel/tp_layout.h: vocab_shard;
// the spec's global shape is the padded [Vp, hidden], its logical shape [vocab, hidden]). Each rank
// looks up the ids it holds (zero rows for the others) and the partial outputs are summed
// (reduce_from_tp) or, with sequence_parallel, reduce-scattered into this rank's sequence shard
// [B, S/T, hidden] (reduce_scatter_to_sp). Registered as
// "reference.embedding" (Register<Embedding, EmbeddingConfig>).
#pragma once

#include <cstdint>

#include "framework/registry/build_context.h"
#include "framework/registry/module.h"
#include "parallel/tp_layout.h"

namespace graft {

struct EmbeddingConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  bool sequence_parallel = false;  // with tp: the output is this rank's sequence shard
};

class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingConfig& config,
                     const std::string& type = "reference.embedding");
  Embedding(const EmbeddingConfig& config, const BuildContext& ctx,
            const std::string& type = "reference.embedding");
  // This rank's rows of the (padded) vocabulary.
  const VocabShard& shard() const { return shard_; }
  const EmbeddingConfig& config() const { return config_; }

  // ids: i64 [B, S] on the parameters' device -> f32 [B, S, hidden].
  Tensor forward(const Tensor& ids, double scale = 1.0);
  // dy: [B, S, hidden]; accumulates scale · dy into weight.grad rows (allocating it if needed).
  void backward(const Tensor& dy, const Tensor& ids, double scale = 1.0);

 private:
  EmbeddingConfig config_;
  std::shared_ptr<ProcessGroup> tp_;
  VocabShard shard_;
};

}  // namespace graft
