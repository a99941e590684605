// Context parallelism through a whole CausalLM under mpirun (-np 2: cp2; -np 4: cp2×dp2, cp4,
// tp2×cp2, tp2×cp2 + sequence parallelism), against a single-process model on every rank: for
// both layer sets (reference, and te through the override scope), a Llama with GQA and a Mistral
// with a sliding window that crosses chunk boundaries, with document masks (segment ids,
// positions restarting per document) and a key padding mask; three SGD steps, and at each the
// loss and every parameter gradient (reduced by the gradient buckets over dp×cp as in the
// trainer; under tp each rank's box of the single-process gradient) must match.
//
// Tolerance 1e-5 relative per tensor: f32; the runs differ only in how sums are grouped (the LSE
// merge of chunk pairs, dK/dV summed over ranks, parameter gradients summed over ranks); measured
// worst values are printed. A chunk in the wrong place, a position not reordered or a gradient
// reduced over the wrong group is an O(1e-1) error.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "framework/model/causal_lm.h"
#include "framework/model/shard_init.h"
#include "framework/registry/registry.h"
#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

nlohmann::json llama_json() {
  return {{"model_type", "llama"},       {"vocab_size", 61},
          {"hidden_size", 32},           {"intermediate_size", 40},
          {"num_hidden_layers", 2},      {"num_attention_heads", 4},
          {"num_key_value_heads", 2},    {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},        {"hidden_act", "silu"},
          {"tie_word_embeddings", false}};
}

nlohmann::json mistral_json() {
  nlohmann::json j = llama_json();
  j["model_type"] = "mistral";
  j["sliding_window"] = 5;
  return j;
}

struct Case {
  const char* name;
  bool mistral, te, documents, padding;
};

double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// A global batch of `rows` x `S`: ids, shifted targets (some ignored), and optionally documents
// (positions restart, segment ids) or left padding.
LmInputs make_batch(int64_t rows, int64_t S, int64_t vocab, uint32_t seed, const Case& c) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> tok(0, vocab - 1);
  std::vector<int64_t> ids(rows * S), tgt(rows * S), pos(rows * S), seg(rows * S), mask(rows * S);
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t cut1 = 3 + b, cut2 = 9 + b % 3, pad = b % 2 ? 3 : 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t i = b * S + s;
      ids[i] = tok(rng);
      tgt[i] = (s % 7 == 6) ? -100 : tok(rng);
      seg[i] = s < cut1 ? 0 : s < cut2 ? 1 : 2;
      pos[i] = c.documents ? s - (seg[i] == 0 ? 0 : seg[i] == 1 ? cut1 : cut2) : s;
      mask[i] = c.padding && s < pad ? 0 : 1;
      if (!mask[i]) tgt[i] = -100;
    }
  }
  LmInputs in;
  in.input_ids = Tensor::from_vector(ids, {rows, S});
  in.targets = Tensor::from_vector(tgt, {rows, S});
  if (c.documents) {
    in.positions = Tensor::from_vector(pos, {rows, S});
    in.segment_ids = Tensor::from_vector(seg, {rows, S});
  }
  if (c.padding) in.attention_mask = Tensor::from_vector(mask, {rows, S});
  return in;
}

// Rows [r0, r0 + n) of every tensor of the batch.
LmInputs rows_of(const LmInputs& in, int64_t r0, int64_t n) {
  auto take = [&](const Tensor& t) { return t.defined() ? t.slice(0, r0, n).contiguous() : t; };
  LmInputs out;
  out.input_ids = take(in.input_ids);
  out.targets = take(in.targets);
  out.positions = take(in.positions);
  out.segment_ids = take(in.segment_ids);
  out.attention_mask = take(in.attention_mask);
  return out;
}

int64_t count_targets(const Tensor& t) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += t.data<int64_t>()[i] != -100;
  return n;
}

std::unique_ptr<CausalLM> build(const ModelConfig& cfg, bool te, const BuildContext& ctx) {
  std::unique_ptr<OverrideScope> scope;
  if (te)
    scope = std::make_unique<OverrideScope>(std::vector<std::pair<std::string, std::string>>{
        {cfg.decoder_layer, "te.transformer_layer"}});
  auto m = build_model(cfg, ctx);
  m->init_weights(11);
  return m;
}

struct Layout {
  int64_t cp, tp;
  bool sp;
};

void run_case(const Case& c, const Layout& l) {
  const WorldInfo& w = world_info();
  ParallelConfig layout;
  layout.cp = l.cp;
  layout.tp = l.tp;
  layout.sequence_parallel = l.sp;
  layout.timeout_s = 120;
  auto groups = make_parallel_groups(layout, w, Device::cpu(), "cp-model-test");
  const int64_t dp = groups->layout.dp;
  const ModelConfig cfg = parse_hf_config(c.mistral ? mistral_json() : llama_json(), "cp-test");
  auto ref = build(cfg, c.te, BuildContext{});
  auto cpm = build(cfg, c.te, BuildContext{Device::cpu(), DType::kF32, groups});
  ref->allocate_grads();
  auto buckets = attach_grad_buckets(*cpm, groups->dp_cp, GradBucketOptions{1.0, false});
  std::map<std::string, Parameter*> ref_params;
  for (auto& [n, p] : ref->named_parameters()) ref_params[n] = p;
  const int64_t rows_per_dp = 2, S = 16;
  double worst_loss = 0, worst_grad = 0;
  for (int step = 0; step < 3; ++step) {
    LmInputs global = make_batch(rows_per_dp * dp, S, cfg.vocab_size, 100 + step, c);
    ref->zero_grad();
    const double want = ref->forward_backward(global);
    LmInputs mine = rows_of(global, groups->dp->rank() * rows_per_dp, rows_per_dp);
    mine.loss_divisor = count_targets(global.targets);
    buckets->zero_grad();
    buckets->set_sync(true);
    // The buckets average over dp x cp: scaled by its size, the gradients are summed.
    double got = cpm->forward_backward(mine, true, static_cast<double>(groups->dp_cp->size()));
    buckets->finish();
    got = groups->dp->all_reduce_scalar(got, ReduceOp::kSum);
    EXPECT_NEAR(got, want, 1e-5 * std::abs(want)) << c.name << " step " << step;
    worst_loss = std::max(worst_loss, std::abs(got - want) / std::abs(want));
    for (auto& [n, p] : cpm->named_parameters()) {
      const Parameter& r = *ref_params.at(n);
      const double e = rel_err(p->grad, whole_box(r.grad, r.spec, p->spec, p->value.shape(), n));
      EXPECT_LE(e, 1e-5) << c.name << " step " << step << " " << n;
      worst_grad = std::max(worst_grad, e);
    }
    // The same SGD step on both.
    for (CausalLM* m : {ref.get(), cpm.get()})
      for (auto& [n, p] : m->named_parameters()) {
        float* v = p->value.data<float>();
        const float* d = p->grad.data<float>();
        for (int64_t j = 0; j < p->value.numel(); ++j) v[j] -= 0.5f * d[j];
      }
  }
  // forward() under cp: the whole-sequence logits, gathered.
  LmInputs last = make_batch(rows_per_dp, S, cfg.vocab_size, 7, c);
  EXPECT_LE(rel_err(cpm->forward(last), ref->forward(last)), 1e-5) << c.name << " logits";
  if (w.rank == 0)
    std::printf("  %s tp%lld%s cp%lld dp%lld: worst loss %.2e, worst gradient %.2e relative\n",
                c.name, static_cast<long long>(l.tp), l.sp ? "+sp" : "",
                static_cast<long long>(l.cp), static_cast<long long>(dp), worst_loss, worst_grad);
}

class ContextParallelModel : public ::testing::TestWithParam<Case> {};

TEST_P(ContextParallelModel, MatchesSingleProcessOverThreeSteps) {
  run_case(GetParam(), {2, 1, false});  // cp2 (np 2), cp2 x dp2 (np 4)
  if (world_info().size == 4) {
    run_case(GetParam(), {4, 1, false});
    run_case(GetParam(), {2, 2, false});
    run_case(GetParam(), {2, 2, true});
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ContextParallelModel,
                         ::testing::Values(Case{"llama_reference", false, false, false, false},
                                           Case{"llama_te", false, true, false, false},
                                           Case{"mistral_window_reference", true, false, false,
                                                false},
                                           Case{"mistral_window_te", true, true, false, false},
                                           Case{"documents_reference", false, false, true, false},
                                           Case{"documents_te", false, true, true, false},
                                           Case{"padding_reference", true, false, false, true},
                                           Case{"padding_te", true, true, false, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ContextParallelModel, SequenceNotDivisibleByTwiceCpIsAnInputError) {
  ParallelConfig layout;
  layout.cp = world_info().size;
  layout.timeout_s = 120;
  auto groups = make_parallel_groups(layout, world_info(), Device::cpu(), "cp-model-test");
  auto m = build(parse_hf_config(llama_json(), "cp-test"), false,
                 BuildContext{Device::cpu(), DType::kF32, groups});
  Case c{"x", false, false, false, false};
  LmInputs in = make_batch(1, 2 * world_info().size + 2, 61, 1, c);
  try {
    m->forward_backward(in);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.cp"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace graft
