// CPU activations, plain and gated, evaluated in f64 on f32 storage. Math: kernels/activation.h.
#include "kernels/activation.h"

#include <cmath>
#include <numbers>

#include "kernels/cpu/cpu_util.h"

namespace graft {

namespace {
struct ActName {
  Activation act;
  const char* name;
};
constexpr ActName kActNames[] = {
    {Activation::kGelu, "gelu"},
    {Activation::kGeluTanh, "gelu_tanh"},
    {Activation::kSilu, "silu"},
    {Activation::kRelu, "relu"},
    {Activation::kSquaredRelu, "squared_relu"},
    {Activation::kQGelu, "qgelu"},
    {Activation::kSwiglu, "swiglu"},
    {Activation::kGeglu, "geglu"},
    {Activation::kReglu, "reglu"},
};
}  // namespace

std::optional<Activation> activation_from_name(std::string_view name) {
  for (const auto& a : kActNames)
    if (name == a.name) return a.act;
  return std::nullopt;
}

const char* activation_name(Activation a) {
  for (const auto& n : kActNames)
    if (n.act == a) return n.name;
  return "?";
}

bool activation_is_gated(Activation a) {
  return a == Activation::kSwiglu || a == Activation::kGeglu || a == Activation::kReglu;
}

namespace cpu {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluTanhC = 0.044715;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The plain activation f (gated ones use the f of their gate) and its derivative.
Activation base_of(Activation a) {
  switch (a) {
    case Activation::kSwiglu:
      return Activation::kSilu;
    case Activation::kGeglu:
      return Activation::kGeluTanh;
    case Activation::kReglu:
      return Activation::kRelu;
    default:
      return a;
  }
}

double act_f(Activation a, double x) {
  switch (a) {
    case Activation::kGelu:
      return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
    case Activation::kGeluTanh:
      return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluTanhC * x * x * x)));
    case Activation::kSilu:
      return x * sigmoid(x);
    case Activation::kRelu:
      return x > 0 ? x : 0.0;
    case Activation::kSquaredRelu:
      return x > 0 ? x * x : 0.0;
    case Activation::kQGelu:
      return x * sigmoid(1.702 * x);
    default:
      GRAFT_CHECK(false, "activation: no plain form of ", activation_name(a));
  }
}

double act_df(Activation a, double x) {
  switch (a) {
    case Activation::kGelu: {
      const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
      return 0.5 * (1.0 + std::erf(x / std::numbers::sqrt2)) + x * pdf;
    }
    case Activation::kGeluTanh: {
      const double u = kSqrt2OverPi * (x + kGeluTanhC * x * x * x);
      const double t = std::tanh(u);
      const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluTanhC * x * x);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    }
    case Activation::kSilu: {
      const double s = sigmoid(x);
      return s * (1.0 + x * (1.0 - s));
    }
    case Activation::kRelu:
      return x > 0 ? 1.0 : 0.0;
    case Activation::kSquaredRelu:
      return x > 0 ? 2.0 * x : 0.0;
    case Activation::kQGelu: {
      const double s = sigmoid(1.702 * x);
      return s * (1.0 + 1.702 * x * (1.0 - s));
    }
    default:
      GRAFT_CHECK(false, "activation: no plain form of ", activation_name(a));
  }
}

void check(const Device& d, DType t, int64_t rows, int64_t cols, const void* a, const void* b,
           const char* name) {
  detail::check_cpu(d, name);
  detail::check_f32(t, name, "tensors");
  GRAFT_CHECK(rows >= 0 && cols >= 0, name, ": bad shape [", rows, ", ", cols, "]");
  GRAFT_CHECK(rows * cols == 0 || (a && b), name, ": null pointer");
}

}  // namespace

void activation_fwd(const ActFwdParams& p) {
  check(p.device, p.dtype, p.rows, p.cols, p.x, p.y, "activation_fwd");
  const auto* x = static_cast<const float*>(p.x);
  auto* y = static_cast<float*>(p.y);
  const Activation f = base_of(p.act);
  if (!activation_is_gated(p.act)) {
    for (int64_t i = 0; i < p.rows * p.cols; ++i) y[i] = static_cast<float>(act_f(f, x[i]));
    return;
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* g = x + r * 2 * p.cols;
    const float* u = g + p.cols;
    for (int64_t j = 0; j < p.cols; ++j)
      y[r * p.cols + j] = static_cast<float>(act_f(f, g[j]) * static_cast<double>(u[j]));
  }
}

void activation_bwd(const ActBwdParams& p) {
  check(p.device, p.dtype, p.rows, p.cols, p.x, p.dx, "activation_bwd");
  GRAFT_CHECK(p.rows * p.cols == 0 || p.dy, "activation_bwd: null dy");
  const auto* dy = static_cast<const float*>(p.dy);
  const auto* x = static_cast<const float*>(p.x);
  auto* dx = static_cast<float*>(p.dx);
  const Activation f = base_of(p.act);
  if (!activation_is_gated(p.act)) {
    for (int64_t i = 0; i < p.rows * p.cols; ++i)
      dx[i] = static_cast<float>(static_cast<double>(dy[i]) * act_df(f, x[i]));
    return;
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* g = x + r * 2 * p.cols;
    const float* u = g + p.cols;
    const float* dyr = dy + r * p.cols;
    float* dg = dx + r * 2 * p.cols;
    float* du = dg + p.cols;
    for (int64_t j = 0; j < p.cols; ++j) {
      const double gj = g[j], uj = u[j], d = dyr[j];
      dg[j] = static_cast<float>(d * uj * act_df(f, gj));
      du[j] = static_cast<float>(d * act_f(f, gj));
    }
  }
}

}  // namespace cpu
}  // namespace graft
