// Helpers for the layer tests: random tensors, a scalar loss, finite differences, and copying
// weights between two layer layouts through their HF weight maps.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/registry/module.h"
#include "layers/weight_map.h"

namespace graft::test {

inline Tensor randn(const Shape& shape, std::mt19937& rng, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(v, shape);
}

inline void randomize(Module& m, std::mt19937& rng, float scale = 0.3f) {
  for (auto& [name, p] : m.named_parameters()) {
    const bool norm =
        name.find("norm") != std::string::npos && name.find("weight") != std::string::npos;
    p->value.copy_from(randn(p->value.shape(), rng, norm ? 0.2f : scale, norm ? 1.0f : 0.0f));
  }
}

// Σ y · r in double.
inline double dot(const Tensor& y, const Tensor& r) {
  auto a = y.to_f32_vector(), b = r.to_f32_vector();
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

inline double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    den += static_cast<double>(y[i]) * y[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Central differences of f at `samples` random elements of t (a CPU f32 tensor, contiguous),
// compared with the analytic gradient g: returns ‖fd − g‖ / ‖g‖ over the sampled elements.
inline double fd_rel_err(Tensor& t, const Tensor& g, const std::function<double()>& f, int samples,
                         std::mt19937& rng, float eps = 1e-2f) {
  float* d = t.data<float>();
  auto gv = g.to_f32_vector();
  std::uniform_int_distribution<int64_t> pick(0, t.numel() - 1);
  double num = 0, den = 0;
  for (int s = 0; s < samples; ++s) {
    const int64_t i = samples >= t.numel() ? s % t.numel() : pick(rng);
    const float old = d[i];
    d[i] = old + eps;
    const double fp = f();
    d[i] = old - eps;
    const double fm = f();
    d[i] = old;
    const double fd = (fp - fm) / (2.0 * eps);
    num += (fd - gv[i]) * (fd - gv[i]);
    den += static_cast<double>(gv[i]) * gv[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
}

// HF tensors of a layer through its weight map (export direction).
inline std::map<std::string, Tensor> export_hf(Module& m, const WeightMap& map) {
  std::map<std::string, Tensor> hf;
  auto params = m.named_parameters();
  auto find = [&](const std::string& n) -> Parameter* {
    for (auto& [name, p] : params)
      if (name == n) return p;
    ADD_FAILURE() << "no parameter " << n;
    return nullptr;
  };
  // First pass: sizes of each HF tensor.
  std::map<std::string, Shape> shapes;
  for (const auto& e : map) {
    Parameter* p = find(e.param);
    for (const auto& pc : e.pieces) {
      Shape s = p->value.shape();
      const int64_t len = pc.length < 0 ? s[pc.dim] : pc.length;
      auto& hs = shapes[pc.hf_name];
      if (hs.empty()) {
        hs = s;
        hs[pc.dim] = 0;
      }
      hs[pc.dim] = std::max(hs[pc.dim], pc.hf_start + len);
    }
  }
  for (auto& [n, s] : shapes) hf[n] = Tensor::zeros(s, DType::kF32);
  for (const auto& e : map) {
    Parameter* p = find(e.param);
    for (const auto& pc : e.pieces) {
      Tensor& h = hf[pc.hf_name];
      const int64_t len = pc.length < 0 ? h.size(pc.dim) : pc.length;
      h.slice(pc.dim, pc.hf_start, len).copy_from(p->value.slice(pc.dim, pc.start, len));
    }
  }
  return hf;
}

// Fills a layer's parameters from HF tensors through its weight map (load direction).
inline void import_hf(Module& m, const WeightMap& map, const std::map<std::string, Tensor>& hf) {
  auto params = m.named_parameters();
  for (const auto& e : map) {
    Parameter* p = nullptr;
    for (auto& [name, q] : params)
      if (name == e.param) p = q;
    ASSERT_NE(p, nullptr) << e.param;
    for (const auto& pc : e.pieces) {
      auto it = hf.find(pc.hf_name);
      ASSERT_NE(it, hf.end()) << pc.hf_name;
      const int64_t len = pc.length < 0 ? it->second.size(pc.dim) : pc.length;
      p->value.slice(pc.dim, pc.start, len).copy_from(it->second.slice(pc.dim, pc.hf_start, len));
    }
  }
}

}  // namespace graft::test
