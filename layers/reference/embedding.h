// Reference token embedding (HF nn.Embedding, with Gemma's optional output scale).
//
//   weight: [vocab_size, hidden_size]
//   forward:  y[b, s, :] = weight[ids[b, s], :] · scale          ids i64 [B, S] -> y [B, S, H]
//   backward: weight.grad[ids[b, s], :] += dy[b, s, :] · scale    (accumulated)
//
// An id outside [0, vocab_size) is an InputError naming the id. Registered as
// "reference.embedding" (Register<Embedding, EmbeddingConfig>).
#pragma once

#include <cstdint>

#include "framework/registry/module.h"

namespace graft {

struct EmbeddingConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
};

class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingConfig& config,
                     const std::string& type = "reference.embedding");
  const EmbeddingConfig& config() const { return config_; }

  // ids: i64 [B, S] on the parameters' device -> f32 [B, S, hidden].
  Tensor forward(const Tensor& ids, double scale = 1.0);
  // dy: [B, S, hidden]; accumulates scale · dy into weight.grad rows (allocating it if needed).
  void backward(const Tensor& dy, const Tensor& ids, double scale = 1.0);

 private:
  EmbeddingConfig config_;
};

}  // namespace graft
