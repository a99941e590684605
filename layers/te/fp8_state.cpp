#include "layers/te/fp8_state.h"

#include <cmath>
#include <functional>
#include <unordered_map>

#include "framework/registry/module.h"
#include "kernels/elementwise.h"
#include "kernels/fp8.h"
#include "kernels/fp8_norm.h"
#include "parallel/process_group.h"

namespace graft::te {

namespace {
// scale_inv = 1 for an empty operand, by a fill on its device: no host copy, so a CUDA-graph
// capture that meets an empty cast stays valid.
void set_one(Tensor& scale_inv) {
  FillParams f;
  f.x = scale_inv.raw();
  f.value = 1.0f;
  f.n = 1;
  f.dtype = DType::kF32;
  f.device = scale_inv.device();
  fill(f);
}
}  // namespace

const char* fp8_recipe_name(Fp8Recipe r) {
  switch (r) {
    case Fp8Recipe::kDelayed:
      return "delayed";
    case Fp8Recipe::kCurrent:
      return "current";
    default:
      return "none";
  }
}

Fp8State::Fp8State(Fp8Config config, Device device)
    : config_(std::move(config)), device_(device), profile_(device) {
  GRAFT_CHECK(config_.enabled(), "Fp8State: recipe none");
}

int64_t Fp8State::add_slot(const Module* owner, const std::string& name, Fp8Role role) {
  GRAFT_CHECK(!history_.defined(), "Fp8State: slot ", name, " added after the buffers were made");
  Slot s;
  s.owner = owner;
  s.name = name;
  s.dtype = role == Fp8Role::kGradOutput ? config_.backward_dtype() : config_.forward_dtype();
  s.role = role;
  slots_.push_back(s);
  return num_slots() - 1;
}

void Fp8State::finalize(Module& root) {
  std::unordered_map<const Module*, std::string> path;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m,
                                                                    const std::string& p) {
    path[&m] = p;
    for (const auto& [name, child] : m.children()) walk(*child, p.empty() ? name : p + "." + name);
  };
  walk(root, "");
  for (Slot& s : slots_) {
    auto it = path.find(s.owner);
    GRAFT_CHECK(it != path.end(), "Fp8State: the owner of FP8 slot ", s.name,
                " is not part of the model");
    s.name = it->second.empty() ? s.name : it->second + "." + s.name;
  }
  ensure_buffers();
}

void Fp8State::ensure_buffers() {
  if (history_.defined()) return;
  const int64_t n = num_slots();
  std::vector<float> ones(static_cast<size_t>(n), 1.0f), smax(static_cast<size_t>(n));
  const float margin = std::ldexp(1.0f, -static_cast<int>(delayed() ? config_.margin : 0));
  for (int64_t i = 0; i < n; ++i) smax[i] = fp8_max(slots_[i].dtype) * margin;
  history_ = Tensor::zeros({len(), n}, DType::kF32, device_);
  scale_ = Tensor::from_vector(ones, {n}).to(device_);
  scaled_max_ = Tensor::from_vector(smax, {n}).to(device_);
}

float* Fp8State::scale_ptr(int64_t i) { return static_cast<float*>(scale_.raw()) + i; }
float* Fp8State::amax_ptr(int64_t i) { return static_cast<float*>(history_.raw()) + i; }

void Fp8State::cast(int64_t slot, const Tensor& x, bool record, Fp8Operand* q, Fp8Operand* qt,
                    const std::vector<Fp8DbiasSegment>* dbias) {
  ensure_buffers();
  GRAFT_CHECK(slot >= 0 && slot < num_slots(), "Fp8State::cast: slot ", slot);
  GRAFT_CHECK(x.ndim() == 2 && x.is_contiguous() && x.device() == device_, "Fp8State::cast: x ",
              x.str(), " for slot ", slots_[slot].name);
  const int64_t rows = x.size(0), cols = x.size(1);
  const DType t = slots_[slot].dtype;
  const Fp8Role role = slots_[slot].role;
  Fp8Profile::Scope timed(profile_, role == Fp8Role::kInput    ? "cast_input"
                                    : role == Fp8Role::kWeight ? "cast_weight"
                                                               : "cast_grad_output");
  if (!delayed()) {  // current scaling: scale from this tensor's own amax, in the slot's
    // staging entry (zero: the scale update resets it after reading it)
    AmaxParams a;
    a.x = x.raw();
    a.dtype = x.dtype();
    a.n = x.numel();
    a.amax = amax_ptr(slot);
    a.device = device_;
    amax_reduce(a);
    current_scale_from_staged_amax(slot);
  }
  Fp8QuantizeDbiasParams p;
  p.x = x.raw();
  p.x_dtype = x.dtype();
  p.fp8 = t;
  p.rows = rows;
  p.cols = cols;
  p.scale = scale_ptr(slot);
  p.amax = record && delayed() ? amax_ptr(slot) : nullptr;
  p.device = device_;
  Tensor scale_inv = make_operands(slot, rows, cols, q, qt);
  p.q = q ? q->data.raw() : nullptr;
  p.qt = qt ? qt->data.raw() : nullptr;
  if (dbias) p.dbias = *dbias;
  if (rows == 0 || cols == 0) {  // nothing to cast; the GEMMs skip empty operands
    set_one(scale_inv);
    if (dbias) fp8_quantize_dbias(p);  // empty sums: a written bias gradient becomes zero
    return;
  }
  p.scale_inv = static_cast<float*>(scale_inv.raw());
  if (dbias)
    fp8_quantize_dbias(p);
  else
    fp8_quantize(p);
}

void Fp8State::cast_activation(int64_t slot, const Tensor& h, Activation act, int64_t cols,
                               bool record, Fp8Operand* q, Fp8Operand* qt) {
  ensure_buffers();
  GRAFT_CHECK(slot >= 0 && slot < num_slots(), "Fp8State::cast_activation: slot ", slot);
  const int64_t rows = h.size(0);
  GRAFT_CHECK(h.ndim() == 2 && h.is_contiguous() && h.device() == device_ &&
                  h.size(1) == (activation_is_gated(act) ? 2 * cols : cols),
              "Fp8State::cast_activation: h ", h.str(), " for ", cols, " columns");
  if (!delayed() || rows == 0) {  // the scale needs a's amax first (or there is nothing to do)
    Tensor a = Tensor::empty({rows, cols}, h.dtype(), device_);
    ActFwdParams f;
    f.x = h.raw();
    f.y = a.raw();
    f.rows = rows;
    f.cols = cols;
    f.act = act;
    f.dtype = h.dtype();
    f.device = device_;
    if (rows > 0) activation_fwd(f);
    cast(slot, a, record, q, qt);
    return;
  }
  const DType t = slots_[slot].dtype;
  Fp8Profile::Scope timed(profile_, "cast_activation_fused");
  Tensor scale_inv = make_operands(slot, rows, cols, q, qt);
  Fp8ActQuantizeParams p;
  p.h = h.raw();
  p.h_dtype = h.dtype();
  p.act = act;
  p.fp8 = t;
  p.rows = rows;
  p.cols = cols;
  p.scale = scale_ptr(slot);
  p.amax = record ? amax_ptr(slot) : nullptr;
  p.scale_inv = static_cast<float*>(scale_inv.raw());
  p.device = device_;
  p.q = q ? q->data.raw() : nullptr;
  p.qt = qt ? qt->data.raw() : nullptr;
  fp8_act_quantize(p);
}

void Fp8State::cast_activation_grad(int64_t slot, const Tensor& da, const Tensor& h, Activation act,
                                    Fp8Operand* q, Fp8Operand* qt) {
  ensure_buffers();
  GRAFT_CHECK(slot >= 0 && slot < num_slots(), "Fp8State::cast_activation_grad: slot ", slot);
  const int64_t rows = da.size(0), cols = da.size(1);
  const int64_t hcols = activation_is_gated(act) ? 2 * cols : cols;
  GRAFT_CHECK(da.ndim() == 2 && da.is_contiguous() && h.ndim() == 2 && h.is_contiguous() &&
                  da.device() == device_ && h.device() == device_ && h.dtype() == da.dtype() &&
                  h.size(0) == rows && h.size(1) == hcols,
              "Fp8State::cast_activation_grad: da ", da.str(), ", h ", h.str());
  if (!delayed() || rows == 0) {  // the scale needs dh's amax first (or there is nothing to do)
    Tensor dh = Tensor::empty({rows, hcols}, da.dtype(), device_);
    ActBwdParams b;
    b.dy = da.raw();
    b.x = h.raw();
    b.dx = dh.raw();
    b.rows = rows;
    b.cols = cols;
    b.act = act;
    b.dtype = da.dtype();
    b.device = device_;
    if (rows > 0) activation_bwd(b);
    cast(slot, dh, /*record=*/true, q, qt);
    return;
  }
  Fp8Profile::Scope timed(profile_, "cast_activation_grad_fused");
  Tensor scale_inv = make_operands(slot, rows, hcols, q, qt);
  Fp8ActBwdQuantizeParams p;
  p.da = da.raw();
  p.h = h.raw();
  p.dtype = da.dtype();
  p.act = act;
  p.fp8 = slots_[slot].dtype;
  p.rows = rows;
  p.cols = cols;
  p.scale = scale_ptr(slot);
  p.amax = amax_ptr(slot);
  p.scale_inv = static_cast<float*>(scale_inv.raw());
  p.device = device_;
  p.q = q ? q->data.raw() : nullptr;
  p.qt = qt ? qt->data.raw() : nullptr;
  fp8_act_bwd_quantize(p);
}

void Fp8State::cast_norm(int64_t slot, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const layers::NormSpec& spec, bool record, layers::NormSaved* save,
                         Fp8Operand* q, Fp8Operand* qt) {
  ensure_buffers();
  GRAFT_CHECK(slot >= 0 && slot < num_slots(), "Fp8State::cast_norm: slot ", slot);
  GRAFT_CHECK(x.ndim() == 2 && x.is_contiguous() && x.device() == device_ &&
                  gamma.numel() == x.size(1) && gamma.device() == device_,
              "Fp8State::cast_norm: x ", x.str(), ", gamma ", gamma.str(), " for slot ",
              slots_[slot].name);
  const bool ln = spec.type == NormType::kLayerNorm;
  const int64_t rows = x.size(0), cols = x.size(1);
  Tensor rstd = Tensor::empty({rows}, DType::kF32, device_);
  Tensor mean = ln ? Tensor::empty({rows}, DType::kF32, device_) : Tensor();
  if (save) *save = layers::NormSaved{x, rstd, mean};
  Fp8Profile::Scope timed(profile_, "cast_norm_fused");
  Tensor scale_inv = make_operands(slot, rows, cols, q, qt);
  if (rows == 0) {
    set_one(scale_inv);
    return;
  }
  Fp8NormQuantizeParams p;
  p.x = x.raw();
  p.gamma = gamma.raw();
  p.beta = ln && beta.defined() ? beta.raw() : nullptr;
  p.layer_norm = ln;
  p.eps = static_cast<float>(spec.eps);
  p.zero_centered_gamma = spec.zero_centered_gamma;
  p.rstd = static_cast<float*>(rstd.raw());
  p.mean = ln ? static_cast<float*>(mean.raw()) : nullptr;
  p.fp8 = slots_[slot].dtype;
  p.rows = rows;
  p.cols = cols;
  p.dtype = x.dtype();
  p.weight_dtype = gamma.dtype();
  p.device = device_;
  if (!delayed()) {  // current scaling: the statistics and y's amax first, then the scale
    p.amax = amax_ptr(slot);
    fp8_norm_quantize(p);
    current_scale_from_staged_amax(slot);
    p.stats_given = true;
  }
  p.q = q ? q->data.raw() : nullptr;
  p.qt = qt ? qt->data.raw() : nullptr;
  p.scale = scale_ptr(slot);
  p.amax = record && delayed() ? amax_ptr(slot) : nullptr;
  p.scale_inv = static_cast<float*>(scale_inv.raw());
  fp8_norm_quantize(p);
}

void Fp8State::current_scale_from_staged_amax(int64_t slot) {
  Fp8ScaleUpdateParams u;
  u.history = amax_ptr(slot);
  u.scale = scale_ptr(slot);
  u.scaled_max = static_cast<const float*>(scaled_max_.raw()) + slot;
  u.n = 1;
  u.len = 1;
  u.current = true;
  u.device = device_;
  fp8_scale_update(u);
}

Tensor Fp8State::make_operands(int64_t slot, int64_t rows, int64_t cols, Fp8Operand* q,
                               Fp8Operand* qt) {
  const DType t = slots_[slot].dtype;
  Tensor scale_inv = Tensor::empty({1}, DType::kF32, device_);
  if (q) *q = Fp8Operand{Tensor::empty({rows, cols}, t, device_), scale_inv};
  if (qt) *qt = Fp8Operand{Tensor::empty({cols, rows}, t, device_), scale_inv};
  return scale_inv;
}

void Fp8State::end_step(ProcessGroup& group) {
  ++generation_;
  if (!delayed() || num_slots() == 0) {
    profile_.collect();
    return;
  }
  ensure_buffers();
  const int64_t n = num_slots();
  if (group.size() > 1) {
    Fp8Profile::Scope timed(profile_, "amax_allreduce");
    Tensor staged = history_.slice(0, 0, 1).view({n});  // row 0: contiguous
    group.all_reduce(staged, ReduceOp::kMax);
  }
  Fp8ScaleUpdateParams u;
  u.history = static_cast<float*>(history_.raw());
  u.scale = static_cast<float*>(scale_.raw());
  u.scaled_max = static_cast<const float*>(scaled_max_.raw());
  u.n = n;
  u.len = len();
  u.most_recent = config_.amax_compute_algo == AmaxAlgo::kMostRecent;
  u.device = device_;
  {
    Fp8Profile::Scope timed(profile_, "scale_update");
    fp8_scale_update(u);
  }
  profile_.collect();
}

float Fp8State::scale(int64_t slot) const {
  GRAFT_CHECK(scale_.defined() && slot >= 0 && slot < num_slots(), "Fp8State::scale: slot ", slot);
  return scale_.to(Device::cpu()).data<float>()[slot];
}

std::vector<float> Fp8State::history(int64_t slot) const {
  GRAFT_CHECK(history_.defined() && slot >= 0 && slot < num_slots(), "Fp8State::history: slot ",
              slot);
  Tensor h = history_.to(Device::cpu());
  std::vector<float> out(static_cast<size_t>(len()));
  for (int64_t j = 0; j < len(); ++j) out[j] = h.data<float>()[j * num_slots() + slot];
  return out;
}

std::vector<std::string> Fp8State::state_names() const {
  std::vector<std::string> names;
  if (!delayed()) return names;
  for (const Slot& s : slots_) {
    names.push_back(s.name + ".amax_history");
    names.push_back(s.name + ".scale");
  }
  return names;
}

std::vector<std::pair<std::string, Tensor>> Fp8State::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  if (!delayed() || !history_.defined()) return out;
  Tensor h = history_.to(Device::cpu()), s = scale_.to(Device::cpu());
  const int64_t n = num_slots();
  for (int64_t i = 0; i < n; ++i) {
    Tensor col = Tensor::empty({len()}, DType::kF32);
    for (int64_t j = 0; j < len(); ++j) col.data<float>()[j] = h.data<float>()[j * n + i];
    out.emplace_back(slots_[i].name + ".amax_history", col);
    out.emplace_back(slots_[i].name + ".scale",
                     Tensor::from_vector(std::vector<float>{s.data<float>()[i]}, {1}));
  }
  return out;
}

void Fp8State::load_state(const std::map<std::string, Tensor>& tensors, const std::string& where) {
  if (!delayed()) return;
  ensure_buffers();
  const int64_t n = num_slots();
  Tensor h = history_.to(Device::cpu()), s = scale_.to(Device::cpu());
  for (int64_t i = 0; i < n; ++i) {
    const std::string hk = slots_[i].name + ".amax_history", sk = slots_[i].name + ".scale";
    auto hi = tensors.find(hk), si = tensors.find(sk);
    GRAFT_INPUT_CHECK(hi != tensors.end() && si != tensors.end(), where, ": FP8 state ",
                      hi == tensors.end() ? hk : sk, " is missing");
    GRAFT_INPUT_CHECK(hi->second.shape() == Shape({len()}) && si->second.shape() == Shape({1}),
                      where, ": FP8 state ", hk, " has shape ", shape_str(hi->second.shape()),
                      ", expected [", len(), "] (precision.fp8.amax_history_len)");
    const std::vector<float> hv = hi->second.to_f32_vector(), sv = si->second.to_f32_vector();
    for (int64_t j = 0; j < len(); ++j) h.data<float>()[j * n + i] = hv[j];
    s.data<float>()[i] = sv[0];
  }
  history_.copy_from(h);
  scale_.copy_from(s);
}

}  // namespace graft::te
