// Tensor and sequence parallelism against one process, in process under mpirun: every tiny
// architecture (tests/model: Llama GQA, Gemma MQA with (1 + w) norms, √hidden scale and tied
// embeddings, Qwen2 biases, Qwen3 q/k norms with a sliding window, Mistral MQA with a window; all
// with vocabularies that tp does not divide, so the padded vocabulary is exercised) with both
// layer sets, in every layout the world allows:
//   2 ranks: tp2, tp2 + sp            4 ranks: tp4 (KV heads replicated), tp4 + sp, tp2 × dp2,
//                                              tp2 × dp2 + sp
// (both layer sets replicate KV heads where tp > KV heads — te's fused qkv then holds its
// replicated key/value rows as a second part, weight_kv; Qwen2's 6 heads at tp4 are a clear
// InputError in both.)
// Each rank also builds the single-process model. init_weights must give every rank exactly its
// box of the single-process weights; then 3 steps of plain SGD on the same global batch (split
// over dp) must give the same loss and every gradient of every step within 1e-5 relative
// (‖tp − ref‖ / ‖ref‖ per tensor; both sides compute f32 math, tp only sums partial products in
// another order, ~1e-7), and generation under tp the same tokens as the single process.
#include <gtest/gtest.h>

#include <map>

#include "framework/model/shard_init.h"
#include "framework/registry/registry.h"
#include "kernels/elementwise.h"
#include "parallel/tp_layout.h"
#include "tests/model/test_util.h"
#include "tests/mpi/mpi_test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

constexpr double kTol = 1e-5;

struct Layout {
  int tp;
  bool sp;
  std::string name() const { return str("tp", tp, sp ? "_sp" : ""); }
};

std::vector<Layout> layouts() {
  const int w = world_info().size;
  if (w == 2) return {{2, false}, {2, true}};
  if (w == 4) return {{4, false}, {4, true}, {2, false}, {2, true}};
  return {};
}

// The layout's groups for tensors on `device` (CUDA: the MPI-staged backend, so ranks may share
// one GPU).
std::shared_ptr<const ParallelGroups> groups_for(const Layout& l, Device device) {
  static std::map<std::string, std::shared_ptr<const ParallelGroups>> cache;
  auto& g = cache[l.name() + device.str()];
  if (!g) {
    ParallelConfig c;
    c.tp = l.tp;
    c.sequence_parallel = l.sp;
    c.timeout_s = 120;
    if (device.is_cuda()) c.backend = "mpi";
    g = make_parallel_groups(c, world_info(), device, "tp-model-test");
  }
  return g;
}

double rel(const Tensor& got, const Tensor& want) { return test::rel_err(got, want); }

// value -= lr · grad (f32 parameters, any device).
void sgd(CausalLM& m, float lr) {
  for (auto& [name, p] : m.named_parameters()) {
    AxpyParams a;
    a.x = p->grad.raw();
    a.y = p->value.raw();
    a.alpha = -lr;
    a.n = p->value.numel();
    a.device = p->value.device();
    axpy(a);
  }
}

// Rows [b0, b0 + n) of a [B, S] tensor.
Tensor rows(const Tensor& t, int64_t b0, int64_t n) { return t.slice(0, b0, n).contiguous(); }

using Overrides = std::vector<std::pair<std::string, std::string>>;

template <class Fn>
auto with_overrides(const Overrides& o, Fn&& fn) {
  OverrideScope scope(o);
  return fn();
}

// Every layout of layouts(): init, 3 SGD steps (loss and every gradient), whole logits and
// greedy generation against the single-process CPU model, built under `o`; the tp model's
// parameters on `device` (f32), compared within `tol`.
void expect_matches_one_process(const ModelConfig& cfg, const Overrides& o, bool te,
                                Device device = Device::cpu(), double tol = kTol) {
  const double kTol = tol;
  for (const Layout& l : layouts()) {
    SCOPED_TRACE(l.name());
    auto groups = groups_for(l, device);
    BuildContext ctx{device, DType::kF32, groups};
    if (cfg.decoder.num_attention_heads % l.tp != 0) {  // Qwen2's 6 heads at tp4
      test::expect_input_error(
          [&] { with_overrides(o, [&] { return build_model(cfg, ctx); }); },
          {"num_attention_heads = 6", "num_key_value_heads = 2", "parallel.tp = 4"});
      continue;
    }
    auto ref = with_overrides(o, [&] { return build_model(cfg); });
    auto tp = with_overrides(o, [&] { return build_model(cfg, ctx); });
    ref->init_weights(5);
    tp->init_weights(5);
    std::map<std::string, Parameter*> ref_params;
    for (auto& [n, p] : ref->named_parameters()) ref_params[n] = p;
    // A part of a parameter (te's replicated key/value rows of a fused qkv) is a box of the
    // single-process parameter it is part of.
    auto ref_of = [&](const std::string& n, const Parameter& p) {
      return ref_params.at(logical_param_name(n, p.spec));
    };
    for (auto& [n, p] : tp->named_parameters()) {
      const Parameter& r = *ref_of(n, *p);
      Tensor want = whole_box(r.value, r.spec, p->spec, p->value.shape(), n);
      EXPECT_EQ(rel(p->value, want), 0.0) << n << ": init is not the single-process slice";
    }
    ref->allocate_grads();
    auto buckets = attach_grad_buckets(*tp, groups->dp_cp, GradBucketOptions{1.0, false});
    const int64_t dp = groups->dp->size(), me = groups->dp->rank(), B = 2, S = 8;
    for (int step = 0; step < 3; ++step) {
      SCOPED_TRACE(str("step ", step + 1));
      Tensor ids = test::token_ids(B * dp, S + 1, cfg.vocab_size, 11 + step);
      LmInputs all;
      all.input_ids = ids.slice(1, 0, S).contiguous();
      Tensor tgt = ids.slice(1, 1, S).contiguous();
      tgt.data<int64_t>()[3] = -100;  // an ignored target
      all.targets = tgt;
      all.loss_divisor = B * dp * S - 1;
      ref->zero_grad();
      const double want = ref->forward_backward(all);
      LmInputs mine = all;
      mine.input_ids = rows(all.input_ids, me * B, B);
      mine.targets = rows(all.targets, me * B, B);
      buckets->zero_grad();
      buckets->set_sync(true);
      double got = tp->forward_backward(mine, true, static_cast<double>(dp));
      buckets->finish();
      got = groups->dp->all_reduce_scalar(got, ReduceOp::kSum);
      EXPECT_LE(std::fabs(got - want), kTol * std::fabs(want)) << "loss " << got << " vs " << want;
      for (auto& [n, p] : tp->named_parameters()) {
        const Parameter& r = *ref_of(n, *p);
        Tensor g = whole_box(r.grad, r.spec, p->spec, p->value.shape(), n);
        EXPECT_LE(rel(p->grad.to(Device::cpu()), g), kTol) << n << " (" << p->spec.str() << ")";
      }
      sgd(*ref, 0.1f);
      sgd(*tp, 0.1f);
    }
    // The logits of forward() are the whole vocabulary; greedy generation gives the same tokens.
    Tensor ids = test::token_ids(1, 8, cfg.vocab_size, 3);
    EXPECT_LE(rel(tp->forward(ids), ref->forward(ids)), kTol);
    if (!l.sp) {
      GenerateOptions go;
      go.max_new_tokens = 6;
      std::vector<int64_t> prompt{1, 5, 7};
      EXPECT_EQ(tp->generate(prompt, go), ref->generate(prompt, go));
    }
  }
}

class TpModel : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(TpModel, MatchesOneProcess) {
  const auto& [arch, te] = GetParam();
  if (layouts().empty()) GTEST_SKIP() << "runs at 2 or 4 ranks";
  const ModelConfig cfg = test::tiny_config(arch);
  Overrides o;
  if (te) o.emplace_back(cfg.decoder_layer, "te.transformer_layer");
  expect_matches_one_process(cfg, o, te);
}

// The same on a GPU (several ranks may share it: the MPI-staged backend), f32. The GPU's GEMMs
// and reductions sum in another order than the CPU reference, ~1e-6 relative per op; 1e-4 leaves
// room for that over 3 steps and still catches a wrong shard (O(1)). Skips without a GPU.
TEST(TpModelCuda, MatchesOneCpuProcess) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  if (layouts().empty()) GTEST_SKIP() << "runs at 2 or 4 ranks";
  for (const char* arch : {"llama", "qwen3"}) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(str(arch, te ? " te" : " reference"));
      const ModelConfig cfg = test::tiny_config(arch);
      Overrides o;
      if (te) o.emplace_back(cfg.decoder_layer, "te.transformer_layer");
      expect_matches_one_process(cfg, o, te, Device::cuda(0), 1e-4);
    }
  }
}

// BuildContext::skip_init (what CausalLM builds its layers with) skips the values only: a te
// decoder layer declares the same parameters — names, shapes, dtypes, shard specs — as when it
// initialises them, at every layout (column, row, gated fc1, KV heads replicated for gemma's MQA
// and, at tp4, for llama's and qwen3's two KV heads).
TEST(TpSkipInit, TeLayerDeclaresTheSameParameters) {
  if (layouts().empty()) GTEST_SKIP() << "runs at 2 or 4 ranks";
  // Every collective first (the groups), so a layer that throws on one rank only cannot leave
  // the others waiting in a later group's creation.
  for (const Layout& l : layouts()) groups_for(l, Device::cpu());
  for (const Layout& l : layouts())
    for (const char* arch : {"llama", "gemma", "qwen3"}) {
      SCOPED_TRACE(str(l.name(), " ", arch));
      const ModelConfig cfg = test::tiny_config(arch);
      DecoderConfig dc = cfg.decoder;
      dc.hidden_size = cfg.hidden_size;
      dc.sequence_parallel = l.sp;
      BuildContext init{Device::cpu(), DType::kF32, groups_for(l, Device::cpu()), nullptr};
      BuildContext skip = init;
      skip.skip_init = true;
      const Registry& reg = Registry::global();
      auto a = reg.create<DecoderLayer, DecoderConfig>("te.transformer_layer", dc, init);
      auto b = reg.create<DecoderLayer, DecoderConfig>("te.transformer_layer", dc, skip);
      const auto pa = a->named_parameters(), pb = b->named_parameters();
      ASSERT_EQ(pa.size(), pb.size());
      for (size_t i = 0; i < pa.size(); ++i) {
        EXPECT_EQ(pa[i].first, pb[i].first);
        EXPECT_EQ(pa[i].second->value.shape(), pb[i].second->value.shape()) << pa[i].first;
        EXPECT_EQ(pa[i].second->value.dtype(), pb[i].second->value.dtype()) << pa[i].first;
        EXPECT_EQ(pa[i].second->spec.str(), pb[i].second->spec.str()) << pa[i].first;
      }
    }
}

#ifdef GRAFT_EXAMPLE_PLUGIN
// The example plugin (tests/plugins) declares its own MLP's sharding from its build context: at
// every layout it matches its single-process run like graft's own layers.
TEST(TpPlugin, ExamplePluginMatchesOneProcess) {
  if (layouts().empty()) GTEST_SKIP() << "runs at 2 or 4 ranks";
  load_plugin(test::example_plugin());
  const ModelConfig cfg = test::tiny_config("llama");
  expect_matches_one_process(cfg, {{cfg.decoder_layer, "example.scaled_decoder_layer"}}, false);
}
#endif

INSTANTIATE_TEST_SUITE_P(Arch, TpModel,
                         ::testing::Combine(::testing::Values("llama", "gemma", "qwen2", "qwen3",
                                                              "mistral"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_te" : "_reference");
                         });

}  // namespace
}  // namespace graft
