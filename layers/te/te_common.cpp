#include "layers/te/te_common.h"

#include <random>

#include "layers/reference/common.h"
#include "layers/te/fp8_linear.h"
#include "parallel/tp_collectives.h"
#include "parallel/tp_layout.h"

namespace graft::te {

NormType parse_normalization(const std::string& layer, const std::string& value) {
  if (value == "LayerNorm") return NormType::kLayerNorm;
  if (value == "RMSNorm") return NormType::kRMSNorm;
  throw InputError(str(layer, ": normalization = '", value, "' is not supported (expected ",
                       "LayerNorm or RMSNorm)"));
}

const char* normalization_name(NormType t) {
  return t == NormType::kLayerNorm ? "LayerNorm" : "RMSNorm";
}

Activation parse_te_activation(const std::string& layer, const std::string& value) {
  if (value == "gelu") return Activation::kGeluTanh;  // TE's gelu is the tanh approximation
  if (value == "geglu") return Activation::kGeglu;
  if (value == "qgelu") return Activation::kQGelu;
  if (value == "relu") return Activation::kRelu;
  if (value == "reglu") return Activation::kReglu;
  if (value == "squared_relu") return Activation::kSquaredRelu;
  if (value == "swiglu") return Activation::kSwiglu;
  throw InputError(str(layer, ": activation = '", value, "' is not supported (expected gelu, ",
                       "geglu, qgelu, relu, reglu, squared_relu or swiglu)"));
}

void reject_if(bool set, const std::string& layer, const std::string& option,
               const std::string& value, const std::string& why) {
  if (set)
    throw InputError(str(layer, ": ", option, " = ", value, " is not supported (", why, ")"));
}

void LinearBlocks::init(Module& owner, const std::string& layer, int64_t in, int64_t out, bool bias,
                        const ParametersSplit& split, const std::string& prefix,
                        const InitMethod& init, uint64_t init_seed, DType params_dtype,
                        Device device, const LinearShard& shard) {
  GRAFT_INPUT_CHECK(in > 0 && out > 0, layer, ": in_features = ", in, ", out_features = ", out,
                    ", expected > 0");
  layers::check_params_dtype(layer, params_dtype, device);
  const bool column = shard.tp > 1 && shard.mode == "column";
  const bool row = shard.tp > 1 && shard.mode == "row";
  const int64_t T = shard.tp, r = shard.rank;
  auto divide = [&](int64_t n, const char* what) {
    GRAFT_INPUT_CHECK(n % T == 0, layer, ": ", what, " = ", n, " is not divisible by tp = ", T);
    return n / T;
  };
  in_ = row ? divide(in, "in_features") : in;
  bias_ = bias;
  std::vector<Block> global;  // the blocks of the single-process weight (offset, size global)
  if (split.empty()) {
    global.push_back({prefix + "weight", prefix + "bias", 0, out});
  } else {
    int64_t off = 0;
    for (const auto& [raw, size] : split) {
      std::string name = raw;
      while (!name.empty() && name.back() == '_') name.pop_back();
      GRAFT_INPUT_CHECK(!name.empty() && size > 0, layer, ": parameters_split entry '", raw,
                        "' = ", size, ", expected a name and a positive size");
      global.push_back({name + "_weight", name + "_bias", off, size});
      off += size;
    }
    GRAFT_INPUT_CHECK(off == out, layer, ": parameters_split sizes add up to ", off,
                      ", expected out_features = ", out);
  }
  if (shard.gated_halves) GRAFT_CHECK(global.size() == 1 && out % 2 == 0, layer, ": gated fc1");
  GRAFT_INPUT_CHECK(shard.rows.empty() || (column && !shard.gated_halves), layer,
                    ": tp_rows needs a column-parallel linear (parallel_mode column, tp > 1)");
  // Every block drawn whole, in order: a tp rank slices exactly the single-process values.
  std::mt19937_64 rng(init_seed);
  std::normal_distribution<float> normal(0.0f, 0.023f);
  std::vector<Tensor> whole;
  for (const Block& gb : global) {
    const int64_t n = gb.size;
    // skip_init: the global weight is never generated; the slicing below only shapes zeros.
    Tensor w = Tensor::empty(shard.skip_init ? Shape{n, 0} : Shape{n, in}, DType::kF32);
    if (!shard.skip_init) {
      if (init) {
        init(w);
        GRAFT_INPUT_CHECK(w.shape() == Shape({n, in}), layer, ": init_method changed the ",
                          "weight's shape to ", shape_str(w.shape()));
      } else {
        float* d = w.data<float>();
        for (int64_t k = 0; k < w.numel(); ++k) d[k] = normal(rng);
      }
    }
    whole.push_back(w);
  }
  blocks_.clear();
  int64_t local_off = 0;
  auto add = [&](Block b, Tensor w, ShardSpec ws, ShardSpec bs) {
    b.offset = local_off;
    b.size = w.size(0);
    local_off += b.size;
    if (shard.skip_init) {
      owner.add_parameter(b.weight, Tensor::zeros({b.size, in_}, params_dtype, device), true,
                          std::move(ws));
    } else {
      if (params_dtype != DType::kF32) w = w.to(params_dtype);
      owner.add_parameter(b.weight, device.is_cpu() ? w : w.to(device), true, std::move(ws));
    }
    if (bias)
      owner.add_parameter(b.bias, Tensor::zeros({b.size}, params_dtype, device), /*decay=*/false,
                          std::move(bs));
    blocks_.push_back(std::move(b));
  };
  if (!shard.rows.empty()) {  // explicit pieces (KV heads replicated over tp)
    std::vector<bool> seen(global.size(), false);
    std::vector<std::vector<std::pair<int64_t, int64_t>>> taken(global.size());  // [begin, end)
    for (const TpRowBlock& rb : shard.rows) {
      GRAFT_INPUT_CHECK(rb.block < global.size() && rb.offset >= 0 && rb.rows > 0 &&
                            rb.offset + rb.rows <= global[rb.block].size && rb.replicas >= 1 &&
                            rb.replica >= 0 && rb.replica < rb.replicas,
                        layer, ": tp_rows entry of block ", rb.block, " [", rb.offset, ", +",
                        rb.rows, ") replica ", rb.replica, " of ", rb.replicas,
                        " (expected rows inside one of ", global.size(),
                        " blocks, 0 <= replica < replicas)");
      const Block& gb = global[rb.block];
      for (auto [b0, b1] : taken[rb.block])  // two parameters must not hold the same rows
        GRAFT_INPUT_CHECK(rb.offset + rb.rows <= b0 || rb.offset >= b1, layer, ": tp_rows of ",
                          gb.weight, " [", rb.offset, ", +", rb.rows, ") overlap [", b0, ", ", b1,
                          "), expected disjoint row ranges");
      taken[rb.block].emplace_back(rb.offset, rb.offset + rb.rows);
      GRAFT_INPUT_CHECK(rb.part.empty() != seen[rb.block], layer, ": block ", gb.weight,
                        rb.part.empty() ? " has two pieces without a part name"
                                        : " has a part before its first piece");
      seen[rb.block] = true;
      const int64_t n = gb.size;
      ShardSpec ws = tp_split_spec({n, in}, 0, rb.offset, rb.replica);
      ShardSpec bs = tp_split_spec({n}, 0, rb.offset, rb.replica);
      if (rb.replicas > 1) {
        ws.grad_sum_over.push_back(LayoutGroup::kTP);
        bs.grad_sum_over.push_back(LayoutGroup::kTP);
      }
      Block b = gb;
      if (!rb.part.empty()) {
        ws.part_of = gb.weight;
        bs.part_of = gb.bias;
        b.weight += "_" + rb.part;
        b.bias += "_" + rb.part;
      }
      add(b, whole[rb.block].slice(0, rb.offset, rb.rows).contiguous(), ws, bs);
    }
    for (size_t i = 0; i < global.size(); ++i)
      GRAFT_INPUT_CHECK(seen[i], layer, ": tp_rows leave block ", global[i].weight, " out");
    out_ = local_off;
    return;
  }
  for (size_t i = 0; i < global.size(); ++i) {
    const int64_t n = global[i].size;
    Tensor w = whole[i];
    ShardSpec ws = ShardSpec::replicated({n, in}), bs = ShardSpec::replicated({n});
    if (shard.gated_halves) {  // [gate; up] viewed as [2, F, in]
      const int64_t F = n / 2, Fl = column ? divide(F, "ffn_hidden_size") : F;
      Tensor local = Tensor::empty({2 * Fl, w.size(1)}, DType::kF32);
      local.slice(0, 0, Fl).copy_from(w.slice(0, r * Fl * column, Fl));
      local.slice(0, Fl, Fl).copy_from(w.slice(0, F + r * Fl * column, Fl));
      w = local;
      ws = column ? ShardSpec::split({2, F, in}, 1, LayoutGroup::kTP, r * Fl)
                  : ShardSpec::replicated({2, F, in});
      ws.view = {2, Fl, in};
      bs = column ? ShardSpec::split({2, F}, 1, LayoutGroup::kTP, r * Fl)
                  : ShardSpec::replicated({2, F});
      bs.view = {2, Fl};
    } else if (column) {
      const int64_t nl = divide(n, "out_features");
      w = w.slice(0, r * nl, nl).contiguous();
      ws = ShardSpec::split({n, in}, 0, LayoutGroup::kTP, r * nl);
      bs = ShardSpec::split({n}, 0, LayoutGroup::kTP, r * nl);
    } else if (row) {
      if (!shard.skip_init) w = w.slice(1, r * in_, in_).contiguous();
      ws = ShardSpec::split({n, in}, 1, LayoutGroup::kTP, r * in_);
    }
    add(global[i], w, ws, bs);
  }
  out_ = local_off;
}

void LinearBlocks::enable_fp8(const std::shared_ptr<Fp8State>& state, Module& owner,
                              const std::string& prefix) {
  if (!state) return;
  fp8_ = std::make_shared<Fp8Linear>(state, &owner, prefix);
  if (!state->config().fp8_weights) return;
  for (const auto& b : blocks_) {
    Parameter* w = owner.parameter(b.weight);
    if (w->value.dtype() != DType::kF32) {
      Tensor f = Tensor::empty(w->value.shape(), DType::kF32, w->value.device());
      layers::cast_into(f, w->value);  // a device cast: copy_from only moves equal dtypes
      w->value = f;
    }
    w->f32_master = true;
  }
}

Tensor LinearBlocks::forward(Module& owner, const Tensor& x, bool add_bias,
                             LinearSaved* save) const {
  GRAFT_CHECK(x.ndim() == 2 && x.size(1) == in_, "te linear: x ", x.str(), ", in = ", in_);
  if (fp8_) return fp8_forward(owner, x, add_bias, save);
  if (save) save->x = x;
  Tensor y = Tensor::empty({x.size(0), out_}, x.dtype(), x.device());
  for (const auto& b : blocks_) {
    Tensor yb = y.slice(1, b.offset, b.size);
    Tensor bias = add_bias && bias_ ? owner.parameter(b.bias)->value : Tensor();
    layers::matmul_nt_into(x, owner.parameter(b.weight)->value, bias, yb, 0.0f);
  }
  return y;
}

Tensor LinearBlocks::backward(Module& owner, const Tensor& dy, const LinearSaved& saved,
                              ProcessGroup* reduce) const {
  if (fp8_) {
    Tensor dx = fp8_backward(owner, dy, saved);
    if (reduce) copy_to_tp_backward_async(dx, *reduce)->wait();
    return dx;
  }
  const Tensor& x = saved.x;
  GRAFT_CHECK(dy.ndim() == 2 && dy.size(1) == out_ && dy.size(0) == x.size(0),
              "te linear backward: dy ", dy.str(), " x ", x.str());
  Tensor dx = Tensor::empty({x.size(0), in_}, dy.dtype(), x.device());
  bool first = true;
  for (const auto& b : blocks_) {  // dgrad first, so its all-reduce can overlap the wgrad GEMMs
    layers::matmul_nn_into(dy.slice(1, b.offset, b.size), owner.parameter(b.weight)->value, dx,
                           first ? 0.0f : 1.0f);
    first = false;
  }
  std::unique_ptr<Work> work = reduce ? copy_to_tp_backward_async(dx, *reduce) : nullptr;
  for (const auto& b : blocks_) {
    Tensor dyb = dy.slice(1, b.offset, b.size);
    layers::weight_grad(dyb, x, *owner.parameter(b.weight));
    if (bias_) layers::bias_grad(dyb, *owner.parameter(b.bias));
  }
  if (work) work->wait();
  return dx;
}

Tensor LinearBlocks::backward_activated(Module& owner, const Tensor& da, const Tensor& h,
                                        Activation act, const LinearSaved& saved,
                                        ProcessGroup* reduce) const {
  GRAFT_CHECK(fp8_ && !bias_, "te linear backward_activated: FP8 without a bias only");
  GRAFT_CHECK(h.ndim() == 2 && h.size(1) == out_, "te linear backward: h ", h.str());
  std::vector<Fp8Linear::GradBlock> grads;
  for (const auto& b : blocks_) grads.push_back({b.offset, b.size, owner.parameter(b.weight)});
  Tensor dx =
      fp8_->backward_activated(da.is_contiguous() ? da : da.contiguous(),
                               h.is_contiguous() ? h : h.contiguous(), act, saved.x_t, grads);
  if (reduce) copy_to_tp_backward_async(dx, *reduce)->wait();
  return dx;
}

Tensor LinearBlocks::fp8_weight(Module& owner) const {
  if (blocks_.size() == 1) return owner.parameter(blocks_[0].weight)->value;
  const Tensor& w0 = owner.parameter(blocks_[0].weight)->value;
  Tensor w = Tensor::empty({out_, in_}, w0.dtype(), w0.device());
  for (const auto& b : blocks_) {
    Tensor dst = w.slice(0, b.offset, b.size);
    layers::copy_matrix(dst, owner.parameter(b.weight)->value);
  }
  return w;
}

Tensor LinearBlocks::fp8_bias(Module& owner, bool add_bias) const {
  // The one FP8 GEMM writes every block's columns [offset, offset + size) of y (fp8_weight
  // stacks the blocks in order), so the stacked bias is the epilogue's vector.
  return add_bias && bias_ ? bias(owner) : Tensor();
}

Tensor LinearBlocks::fp8_forward(Module& owner, const Tensor& x, bool add_bias,
                                 LinearSaved* save) const {
  Tensor xc = x.is_contiguous() ? x : x.contiguous();
  return fp8_->forward(
      xc, [&] { return fp8_weight(owner); }, save ? &save->x_t : nullptr,
      fp8_bias(owner, add_bias));
}

Tensor LinearBlocks::forward_normed(Module& owner, const Tensor& x, const Tensor& gamma,
                                    const Tensor& beta, const layers::NormSpec& spec, bool add_bias,
                                    LinearSaved* save, layers::NormSaved* norm_save) const {
  GRAFT_CHECK(fp8_, "te linear: forward_normed without FP8");
  GRAFT_CHECK(x.ndim() == 2 && x.size(1) == in_, "te linear: x ", x.str(), ", in = ", in_);
  Tensor xc = x.is_contiguous() ? x : x.contiguous();
  return fp8_->forward_normed(
      xc, gamma, beta, spec, [&] { return fp8_weight(owner); }, save ? &save->x_t : nullptr,
      norm_save, fp8_bias(owner, add_bias));
}

Tensor LinearBlocks::forward_activated(Module& owner, const Tensor& h, Activation act,
                                       bool add_bias, LinearSaved* save) const {
  const int64_t rows = h.size(0);
  GRAFT_CHECK(h.ndim() == 2 && h.size(1) == (activation_is_gated(act) ? 2 * in_ : in_),
              "te linear: activation input ", h.str(), ", in = ", in_);
  if (fp8_) {
    Tensor hc = h.is_contiguous() ? h : h.contiguous();
    return fp8_->forward_activated(
        hc, act, in_, [&] { return fp8_weight(owner); }, save ? &save->x_t : nullptr,
        fp8_bias(owner, add_bias));
  }
  Tensor a = Tensor::empty({rows, in_}, h.dtype(), h.device());
  ActFwdParams p;
  p.x = h.raw();
  p.y = a.raw();
  p.rows = rows;
  p.cols = in_;
  p.act = act;
  p.dtype = h.dtype();
  p.device = h.device();
  if (rows > 0) activation_fwd(p);
  return forward(owner, a, add_bias, save);
}

Tensor LinearBlocks::fp8_backward(Module& owner, const Tensor& dy, const LinearSaved& saved) const {
  GRAFT_CHECK(dy.ndim() == 2 && dy.size(1) == out_, "te linear backward: dy ", dy.str());
  std::vector<Fp8Linear::GradBlock> grads;  // the bias gradients come out of dy's cast
  for (const auto& b : blocks_)
    grads.push_back(
        {b.offset, b.size, owner.parameter(b.weight), bias_ ? owner.parameter(b.bias) : nullptr});
  Tensor dyc = dy.is_contiguous() ? dy : dy.contiguous();
  return fp8_->backward(dyc, saved.x_t, grads);
}

Tensor LinearBlocks::bias(Module& owner) const {
  if (!bias_) return Tensor();
  if (blocks_.size() == 1) return owner.parameter(blocks_[0].bias)->value;
  const Tensor& b0 = owner.parameter(blocks_[0].bias)->value;
  Tensor out = Tensor::empty({1, out_}, b0.dtype(), b0.device());
  for (const auto& b : blocks_) {
    Tensor dst = out.slice(1, b.offset, b.size);
    layers::copy_matrix(dst, owner.parameter(b.bias)->value.view({1, b.size}));
  }
  return out.view({out_});
}

}  // namespace graft::te
