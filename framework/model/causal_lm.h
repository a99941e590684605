// A decoder-only causal language model: embedding -> decoder layers -> final norm -> LM head.
// The same class serves every architecture and every layer set; the architecture plugin only
// parses its config and picks registry names (see layers/models/*.cpp), and the decoder layers
// come from the registry (so an OverrideScope can swap in te.transformer_layer).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "framework/model/lm_inputs.h"
#include "framework/registry/build_context.h"
#include "layers/decoder.h"
#include "parallel/grad_buckets.h"
#include "parallel/tp_layout.h"

namespace graft {

struct ModelConfig {
  std::string arch;             // architecture registry key, e.g. "llama" (from HF model_type)
  std::string hf_architecture;  // "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t max_position_embeddings = 0;
  DecoderConfig decoder;  // template for every layer (layer_number set per layer)
  std::vector<int64_t>
      layer_windows;  // per-layer sliding window (0 = full); empty = all decoder.sliding_window
  bool tie_word_embeddings = false;
  double embedding_scale = 1.0;      // Gemma: sqrt(hidden_size), applied in the embedding's dtype
  double final_logit_softcap = 0.0;  // 0 = none (rejected by arches that would need it)
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
  double initializer_range = 0.02;
  nlohmann::json hf_config;  // the config.json as read (written back by export)
  std::string decoder_layer = "llama.decoder_layer";  // registry name the architecture asks for
  AttnBackend attention = AttnBackend::kAuto;  // the recipe's model.attention (not an HF field)
};

// Parses an HF config.json (path names the file in errors) through the architecture registered
// under its model_type. Unsupported math-changing fields are InputErrors naming the field.
ModelConfig parse_hf_config(const nlohmann::json& config, const std::string& path);
ModelConfig load_hf_config(const std::string& config_json_path);

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;  // every row of a batch draws from its own stream seeded with this
  bool use_cache = true;
  std::vector<int64_t> stop_ids;  // a row stops after emitting one of these (e.g. the eos ids)
};

class Embedding;
class Norm;
class Linear;

// Module tree (parameter names): embed_tokens.weight, layers.N.<decoder layer's own names>,
// norm.weight, lm_head.weight (absent when tie_word_embeddings: the head reuses
// embed_tokens.weight). All parameters live on config.decoder.device.
//
// Tensor parallelism (the context's tp group, T > 1): the embedding and LM head (or the tied
// embedding weight) are split over the vocabulary, padded to a multiple of T; each rank computes
// the logits of its vocabulary shard and the loss comes from vocab_parallel_xent_fwd (partial
// max, sum-exp and target logit all-reduced over tp), so no rank holds full-vocabulary logits in
// training. forward() and generation gather the logits they return (gather_vocab). The decoder
// layers split heads and the MLP (column / row parallel). With sequence parallelism
// (parallel.sequence_parallel) the embedding output, every layer's input and output and the final
// norm are sequence shards [B, S/T, H]; S must be a multiple of T (generation is not available).
// With the context's fp32_residual (precision.residual: f32) and 16-bit parameters the residual
// stream (the embedding output widened to f32, every layer's input and output, the final norm's
// input) and its gradient are f32; the final norm writes the parameters' dtype for the head.
class CausalLM : public Module {
 public:
  // Builds the tree through the registry; device, dtype and groups come from `ctx`.
  CausalLM(ModelConfig config, BuildContext ctx);
  // Activation recompute (memory for time): when on, a training forward keeps only each decoder
  // layer's input and backward re-runs that layer's forward before its backward. Exact: the
  // layers are deterministic, so gradients are bit-identical to the saved-activation path.
  void set_activation_recompute(bool on) { recompute_ = on; }
  // Called during backward with each module whose parameters' gradients are now complete (LM
  // head, final norm, each decoder layer from the last, the embedding last: it also receives the
  // tied head's gradient). The data-parallel reduction starts a bucket's collective from here.
  void set_backward_hook(std::function<void(Module&)> hook) { backward_hook_ = std::move(hook); }
  bool activation_recompute() const { return recompute_; }
  ~CausalLM() override;
  const ModelConfig& config() const { return config_; }
  const BuildContext& context() const { return ctx_; }
  Device device() const;
  const std::vector<DecoderLayer*>& decoder_layers() const { return layers_; }

  // input_ids: i64 [batch, seq]; attention_mask: optional i64 [batch, seq] (1 token, 0 pad).
  // Returns logits f32 [batch, seq, vocab] (cast from bf16 when the parameters are bf16).
  Tensor forward(const Tensor& input_ids, const Tensor& attention_mask = Tensor());
  // The same with explicit positions / document ids (`targets` unused).
  Tensor forward(const LmInputs& in);

  // Causal-LM loss with HF semantics: position t predicts labels[t+1]; labels == -100 ignored;
  // mean over the counted predictions. With backward=true, parameter grads are accumulated (+=)
  // scaled by `grad_scale` (e.g. 1/accumulation_steps). Returns the loss.
  double forward_backward(const Tensor& input_ids, const Tensor& labels,
                          const Tensor& attention_mask = Tensor(), bool backward = true,
                          double grad_scale = 1.0);
  // The loss on pre-shifted targets (lm_inputs.h): mean of -log p(targets[t]) over the targets
  // that are not -100 (the sum divided by in.loss_divisor when that is > 0). Positions and document
  // ids, when given, reach every attention layer.
  // With `loss_sum` (an f32 [1+] tensor on the model's device) the loss is added to
  // (*loss_sum)[0] on the device and not read back (the return value is then NaN): a training
  // step accumulates its micro-batches there and reads the sum once (one process only).
  // Context parallelism (a cp group of more than one rank): forward and forward_backward are
  // collective over cp; every rank passes the whole batch and keeps its chunks
  // (framework/model/context_parallel.h). forward returns the whole-sequence logits;
  // forward_backward returns the whole batch's loss (summed over cp) and accumulates this rank's
  // share of every parameter gradient (sum them over cp, e.g. with the dp_cp gradient buckets).
  // Generation is local (any one rank, the whole sequence).
  double forward_backward(const LmInputs& in, bool backward = true, double grad_scale = 1.0,
                          Tensor* loss_sum = nullptr);

  // Greedy (temperature 0) or sampled continuation of `prompt`; returns prompt + new tokens.
  // The KV cache (opt.use_cache) lives on the model's device in the activations' dtype.
  std::vector<int64_t> generate(const std::vector<int64_t>& prompt, const GenerateOptions& opt);
  // The same for a batch of prompts generated together (framework/model/generate.cpp): rows are
  // left-padded to the longest prompt, masked by the key-padding mask, with per-row positions;
  // each row stops on its own at a stop id and is not extended after it. Returns prompt + new
  // tokens per row, in order; greedy output equals generate() of each prompt alone.
  std::vector<std::vector<int64_t>> generate_batch(const std::vector<std::vector<int64_t>>& prompts,
                                                   const GenerateOptions& opt);

  // Seeded initialisation (normal(0, initializer_range) for matrices, ones/zeros for norms as the
  // architecture defines), identical for any rank count.
  void init_weights(uint64_t seed);

  // Names of decoder layer implementations in use, e.g. {"te.transformer_layer"}.
  std::vector<std::string> decoder_layer_types() const;
  // What the attention kernels ran since the last reset (counted per call and direction).
  const AttnReport& attention_report() const { return attn_report_; }
  void reset_attention_report() { attn_report_.reset(); }

 private:
  bool recompute_ = false;
  std::function<void(Module&)> backward_hook_;
  struct Saved;
  Tensor hidden(const Tensor& ids, const AttentionInputs& in, Saved* save);  // after final norm
  Tensor head(const Tensor& normed, Saved* save);  // [rows, vocab shard] logits
  // This rank's vocabulary columns -> the whole vocabulary (tp > 1), padding dropped.
  Tensor whole_logits(const Tensor& local);
  double vocab_parallel_loss(Tensor& logits, const Tensor& targets, const LmInputs& li, Saved& save,
                             const AttentionInputs& in, bool backward, double grad_scale);
  // dlogits [rows, vocab shard] -> every parameter gradient (the backward hook reports modules).
  void backward_from_logits(Tensor& dlogits, Saved& save, const AttentionInputs& in);
  // forward_backward of rows already split for cp (context_parallel) or of whole rows.
  double forward_backward_rows(const LmInputs& in, bool backward, double grad_scale,
                               bool context_parallel, Tensor* loss_sum = nullptr);
  AttentionInputs attention_inputs(const LmInputs& in, const Tensor& ids, const char* what);
  // Host f32 logits [batch * vocab] of the last column of every row of `ids` [batch, seq].
  std::vector<float> next_token_logits(const Tensor& ids, const AttentionInputs& in);
  Parameter& embedding_weight();

  ModelConfig config_;
  BuildContext ctx_;
  Embedding* embed_ = nullptr;
  std::vector<DecoderLayer*> layers_;
  Norm* norm_ = nullptr;
  Linear* lm_head_ = nullptr;  // null when tied
  std::shared_ptr<ProcessGroup> tp_;
  bool sp_ = false;   // sequence parallelism (parallel.sequence_parallel with tp > 1)
  VocabShard vocab_;  // this rank's rows of the (padded) vocabulary
  AttnReport attn_report_;
  // 0 .. S-1 per row for each (batch, seq) that forward_backward saw without positions, uploaded
  // once: a step runs no host->device copy of its own (a CUDA graph replays the same tensor).
  std::map<std::pair<int64_t, int64_t>, Tensor> default_positions_;
};

// Gradient buckets over `model`'s parameters in backward order, reduced over `group`, with the
// model's backward hook installed to report each module's parameters to them as they complete.
// The buckets must stay alive while the model runs backward.
std::unique_ptr<GradBuckets> attach_grad_buckets(CausalLM& model,
                                                 std::shared_ptr<ProcessGroup> group,
                                                 GradBucketOptions options);

// Builds a model for `config` (through the registry; overrides in scope apply).
std::unique_ptr<CausalLM> build_model(const ModelConfig& config, const BuildContext& ctx);
// A single process on config.decoder's device and dtype.
std::unique_ptr<CausalLM> build_model(const ModelConfig& config);

}  // namespace graft
