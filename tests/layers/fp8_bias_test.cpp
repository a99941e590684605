// The bias of an FP8 linear on the CPU (emulated FP8), fused as TE fuses it: the bias gradient out
// of the grad-output cast (kernels/fp8.h fp8_quantize_dbias) and the bias added in the FP8 GEMM's
// epilogue. Both are exact on the CPU: the fused column sum is sum_rows' f64 sum rounded once (so
// it equals layers::bias_grad bit for bit), and the epilogue adds the f32 bias to the f32 GEMM
// result once, as y + b does. So every comparison here is exact, and any difference is a bug in
// the segments, the write / accumulate (lazy gradient) mode or the block layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "kernels/fp8.h"
#include "layer_test_util.h"
#include "layers/reference/common.h"
#include "layers/te/fp8_state.h"
#include "layers/te/linear.h"
#include "parallel/process_group.h"

namespace graft {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Seg {
  int64_t offset, size;
};
struct DbiasCase {
  int64_t rows, cols;
  std::vector<Seg> segs;
  DType x = DType::kF32;
  DType fp8 = DType::kF8E5M2;
};

class Fp8QuantizeDbias : public ::testing::TestWithParam<DbiasCase> {};

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* b = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(b, b + t.nbytes());
}

// The cast half equals fp8_quantize byte for byte; each segment's sums equal layers::bias_grad of
// that column block, when the gradient is stale (written: the NaN poison must not survive) and
// when it accumulates onto earlier values.
TEST_P(Fp8QuantizeDbias, CastIsFp8QuantizeAndSumsAreBiasGrad) {
  const DbiasCase c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.rows * 131 + c.cols));
  // Values over a range of magnitudes, so that the sums' rounding is exercised.
  Tensor x = test::randn({c.rows, c.cols}, rng, 3.0f);
  for (int64_t i = 0; i < x.numel(); i += 7) x.data<float>()[i] *= 1e-3f;
  Tensor xc = x.to(c.x);
  const float scale = c.fp8 == DType::kF8E4M3 ? 96.0f : 4000.0f;
  Tensor q0 = Tensor::zeros({c.rows, c.cols}, c.fp8), qt0 = Tensor::zeros({c.cols, c.rows}, c.fp8);
  float amax0 = 0.25f, si0 = 0.0f;
  Fp8QuantizeParams p;
  p.x = xc.raw();
  p.x_dtype = c.x;
  p.q = q0.raw();
  p.qt = qt0.raw();
  p.fp8 = c.fp8;
  p.rows = c.rows;
  p.cols = c.cols;
  p.scale = &scale;
  p.amax = &amax0;
  p.scale_inv = &si0;
  fp8_quantize(p);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "write (stale gradient)");
    Tensor q = Tensor::zeros({c.rows, c.cols}, c.fp8), qt = Tensor::zeros({c.cols, c.rows}, c.fp8);
    float amax = 0.25f, si = 0.0f;
    Fp8QuantizeDbiasParams d;
    static_cast<Fp8QuantizeParams&>(d) = p;
    d.q = q.raw();
    d.qt = qt.raw();
    d.amax = &amax;
    d.scale_inv = &si;
    std::vector<Parameter> ref(c.segs.size());
    std::vector<Tensor> got;
    for (size_t i = 0; i < c.segs.size(); ++i) {
      const Seg s = c.segs[i];
      Tensor start = accumulate ? test::randn({s.size}, rng) : Tensor::full({s.size}, kNaN);
      ref[i].value = Tensor::zeros({s.size}, DType::kF32);
      ref[i].grad = start.clone();
      ref[i].grad_stale = !accumulate;
      layers::bias_grad(xc.slice(1, s.offset, s.size), ref[i]);
      got.push_back(start.clone());
      d.dbias.push_back({got.back().data<float>(), s.offset, s.size, accumulate});
    }
    fp8_quantize_dbias(d);
    EXPECT_EQ(bytes_of(q), bytes_of(q0));
    EXPECT_EQ(bytes_of(qt), bytes_of(qt0));
    EXPECT_EQ(amax, amax0);
    EXPECT_EQ(si, si0);
    for (size_t i = 0; i < c.segs.size(); ++i) {
      const auto g = got[i].to_f32_vector(), want = ref[i].grad.to_f32_vector();
      for (size_t j = 0; j < g.size(); ++j) {
        ASSERT_FALSE(std::isnan(g[j])) << "segment " << i << " column " << j;
        ASSERT_EQ(g[j], want[j]) << "segment " << i << " column " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Fp8QuantizeDbias,
    ::testing::Values(DbiasCase{1, 1, {{0, 1}}},
                      // rows not a multiple of the 64-row tile, columns not of 8 or 16
                      DbiasCase{7, 13, {{0, 13}}, DType::kBF16},
                      DbiasCase{65, 129, {{0, 64}, {64, 65}}},
                      // three blocks (q | k | v), one E4M3 (format: e4m3)
                      DbiasCase{130, 24, {{0, 10}, {10, 6}, {16, 8}}, DType::kF32, DType::kF8E4M3},
                      // an exact tile, and segments that leave columns out
                      DbiasCase{64, 128, {{0, 128}}, DType::kBF16}, DbiasCase{200, 3, {{1, 2}}},
                      // more than one tile row and column of the CUDA kernel
                      DbiasCase{136, 264, {{0, 200}, {200, 64}}, DType::kBF16}),
    [](const auto& info) {
      return str(info.param.rows, "x", info.param.cols, "_", info.param.segs.size(), "seg_",
                 dtype_name(info.param.x), "_", dtype_name(info.param.fp8));
    });

// No rows: a written gradient becomes zero (nothing of this step in it), an accumulated one keeps
// its values, as bias_grad does.
TEST(Fp8QuantizeDbiasEmpty, NoRowsWriteZerosAndAccumulateKeeps) {
  const float scale = 1.0f;
  std::vector<float> write(5, kNaN), keep = {1, 2, 3, 4, 5};
  Fp8QuantizeDbiasParams d;
  d.rows = 0;
  d.cols = 5;
  d.fp8 = DType::kF8E5M2;
  d.scale = &scale;
  d.dbias = {{write.data(), 0, 5, false}};
  fp8_quantize_dbias(d);
  EXPECT_EQ(write, std::vector<float>(5, 0.0f));
  d.dbias = {{keep.data(), 0, 5, true}};
  fp8_quantize_dbias(d);
  EXPECT_EQ(keep, (std::vector<float>{1, 2, 3, 4, 5}));
}

TEST(Fp8QuantizeDbiasEmpty, ASegmentOutsideTheColumnsIsAnError) {
  const float scale = 1.0f;
  std::vector<float> x(12, 1.0f), out(4);
  std::vector<uint8_t> q(12);
  Fp8QuantizeDbiasParams d;
  d.x = x.data();
  d.q = q.data();
  d.rows = 2;
  d.cols = 6;
  d.fp8 = DType::kF8E5M2;
  d.scale = &scale;
  d.dbias = {{out.data(), 3, 4, false}};
  EXPECT_THROW(fp8_quantize_dbias(d), Error);
}

std::shared_ptr<te::Fp8State> make_state(te::Fp8Recipe r) {
  te::Fp8Config c;
  c.recipe = r;
  c.amax_history_len = 4;
  return std::make_shared<te::Fp8State>(c, Device::cpu());
}

struct LayerCase {
  te::Fp8Recipe recipe;
  bool split;  // parameters_split: three blocks, each with its own bias (q | k | v)
};

class Fp8LinearBias : public ::testing::TestWithParam<LayerCase> {};

// te.linear with a bias in FP8 against the same FP8 linear without one plus the unfused bias math
// (y + b, db from layers::bias_grad over dy): three optimizer steps of two micro-batches each,
// the first micro-batch of a step finding the gradients stale (poisoned with NaN, as the lazy
// zeroing leaves them), the second accumulating. Every figure is equal bit for bit.
TEST_P(Fp8LinearBias, FusedEqualsTheUnfusedComputation) {
  const LayerCase lc = GetParam();
  std::mt19937 rng(11);
  const int64_t rows = 37, in = 20, out = 22;  // not multiples of 8 or 16
  te::LinearConfig cb, cn;
  cb.in_features = cn.in_features = in;
  cb.out_features = cn.out_features = out;
  cb.bias = true;
  cn.bias = false;
  if (lc.split)
    cb.parameters_split = cn.parameters_split = {{"query", 12}, {"key", 6}, {"value", 4}};
  const std::vector<std::string> blocks = lc.split
                                              ? std::vector<std::string>{"query_", "key_", "value_"}
                                              : std::vector<std::string>{""};
  const std::vector<Seg> segs =
      lc.split ? std::vector<Seg>{{0, 12}, {12, 6}, {18, 4}} : std::vector<Seg>{{0, out}};
  auto sb = make_state(lc.recipe), sn = make_state(lc.recipe);
  BuildContext xb, xn;
  xb.fp8 = sb;
  xn.fp8 = sn;
  te::Linear a(cb, xb), b(cn, xn);
  test::randomize(a, rng);
  for (const auto& blk : blocks)
    b.parameter(blk + "weight")->value.copy_from(a.parameter(blk + "weight")->value);
  sb->finalize(a);
  sn->finalize(b);
  std::vector<Parameter> ref(blocks.size());  // the unfused bias gradients
  for (size_t i = 0; i < blocks.size(); ++i)
    ref[i].value = Tensor::zeros({segs[i].size}, DType::kF32);
  auto local = make_local_group("world");
  for (int step = 0; step < 3; ++step) {
    for (auto* m : {static_cast<Module*>(&a), static_cast<Module*>(&b)})
      for (auto& [name, p] : m->named_parameters()) {
        if (p->grad.defined()) p->grad.fill_(kNaN);
        p->grad_stale = true;
      }
    for (auto& r : ref) {
      if (r.grad.defined()) r.grad.fill_(kNaN);
      r.grad_stale = true;
    }
    for (int micro = 0; micro < 2; ++micro) {
      SCOPED_TRACE(str("step ", step + 1, ", micro-batch ", micro + 1));
      Tensor x = test::randn({rows, in}, rng), dy = test::randn({rows, out}, rng, 1e-2f);
      std::unique_ptr<LayerCtx> ca, cn2;
      Tensor ya = a.forward(x, &ca).out, yb = b.forward(x, &cn2).out;
      const auto va = ya.to_f32_vector(), vb = yb.to_f32_vector();
      for (size_t i = 0; i < blocks.size(); ++i) {
        const auto bias = a.parameter(blocks[i] + "bias")->value.to_f32_vector();
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < segs[i].size; ++j) {
            const int64_t at = r * out + segs[i].offset + j;
            ASSERT_EQ(va[at], vb[at] + bias[j]) << "y[" << r << ", " << segs[i].offset + j << "]";
          }
      }
      Tensor dxa = a.backward(dy, *ca), dxb = b.backward(dy, *cn2);
      EXPECT_EQ(dxa.to_f32_vector(), dxb.to_f32_vector());
      for (size_t i = 0; i < blocks.size(); ++i) {
        EXPECT_EQ(a.parameter(blocks[i] + "weight")->grad.to_f32_vector(),
                  b.parameter(blocks[i] + "weight")->grad.to_f32_vector())
            << blocks[i] << "weight";
        layers::bias_grad(dy.slice(1, segs[i].offset, segs[i].size), ref[i]);
        EXPECT_EQ(a.parameter(blocks[i] + "bias")->grad.to_f32_vector(),
                  ref[i].grad.to_f32_vector())
            << blocks[i] << "bias";
      }
    }
    sb->end_step(*local);
    sn->end_step(*local);
    for (int64_t slot = 0; slot < sb->num_slots(); ++slot)
      EXPECT_EQ(sb->scale(slot), sn->scale(slot)) << sb->slot_name(slot);
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, Fp8LinearBias,
                         ::testing::Values(LayerCase{te::Fp8Recipe::kDelayed, false},
                                           LayerCase{te::Fp8Recipe::kDelayed, true},
                                           LayerCase{te::Fp8Recipe::kCurrent, false},
                                           LayerCase{te::Fp8Recipe::kCurrent, true}),
                         [](const auto& info) {
                           return std::string(te::fp8_recipe_name(info.param.recipe)) +
                                  (info.param.split ? "_split" : "");
                         });

}  // namespace
}  // namespace graft
