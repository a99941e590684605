// CPU rotary embedding: HF frequency tables in f64, rotate-half application in place.
// Math: kernels/rope.h.
#include "kernels/rope.h"

#include <cmath>
#include <numbers>

#include "kernels/cpu/cpu_util.h"

namespace graft {

std::optional<RopeScaling> rope_scaling_from_name(std::string_view name) {
  if (name == "default") return RopeScaling::kDefault;
  if (name == "linear") return RopeScaling::kLinear;
  if (name == "llama3") return RopeScaling::kLlama3;
  return std::nullopt;
}

const char* rope_scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::kDefault:
      return "default";
    case RopeScaling::kLinear:
      return "linear";
    case RopeScaling::kLlama3:
      return "llama3";
  }
  return "?";
}

std::vector<double> rope_inv_freq(const RopeFreqParams& p) {
  GRAFT_CHECK(p.rotary_dim > 0 && p.rotary_dim % 2 == 0, "rope: rotary_dim = ", p.rotary_dim,
              " must be even and positive");
  GRAFT_CHECK(p.theta > 0, "rope: theta = ", p.theta, " must be positive");
  const int64_t half = p.rotary_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i)
    inv[i] =
        1.0 / std::pow(p.theta, static_cast<double>(2 * i) / static_cast<double>(p.rotary_dim));
  if (p.scaling == RopeScaling::kLinear) {
    GRAFT_CHECK(p.factor > 0, "rope: linear factor = ", p.factor, " must be positive");
    for (double& f : inv) f /= p.factor;
  } else if (p.scaling == RopeScaling::kLlama3) {
    GRAFT_CHECK(p.factor > 0 && p.high_freq_factor > p.low_freq_factor &&
                    p.original_max_position_embeddings > 0,
                "rope: llama3 scaling needs factor > 0 (", p.factor, "), high_freq_factor (",
                p.high_freq_factor, ") > low_freq_factor (", p.low_freq_factor,
                ") and original_max_position_embeddings > 0 (", p.original_max_position_embeddings,
                ")");
    const double old_len = static_cast<double>(p.original_max_position_embeddings);
    const double low_wavelen = old_len / p.low_freq_factor;
    const double high_wavelen = old_len / p.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / p.factor;
      } else if (!(wavelen < high_wavelen)) {  // medium frequency: interpolate
        const double s =
            (old_len / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
        f = (1.0 - s) * f / p.factor + s * f;
      }
    }
  }
  return inv;
}

void rope_cos_sin_table(const RopeFreqParams& p, int64_t max_positions, float* cos, float* sin) {
  GRAFT_CHECK(max_positions >= 0 && (max_positions == 0 || (cos && sin)),
              "rope_cos_sin_table: max_positions = ", max_positions, " or null table");
  const std::vector<double> inv = rope_inv_freq(p);
  const int64_t half = static_cast<int64_t>(inv.size());
  for (int64_t pos = 0; pos < max_positions; ++pos) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos) * inv[i];
      cos[pos * half + i] = static_cast<float>(std::cos(angle) * p.attention_scaling);
      sin[pos * half + i] = static_cast<float>(std::sin(angle) * p.attention_scaling);
    }
  }
}

namespace cpu {
namespace {

// Rotates every head by +angle (forward) or -angle (backward: the transpose of the rotation).
void rope_apply(const RopeParams& p, bool forward, const char* name) {
  detail::check_cpu(p.device, name);
  detail::check_f32(p.dtype, name, "x");
  const int64_t rd = p.rotary_dim ? p.rotary_dim : p.head_dim;
  GRAFT_CHECK(p.batch >= 0 && p.seq >= 0 && p.heads >= 0 && p.head_dim > 0, name, ": bad shape [",
              p.batch, ", ", p.seq, ", ", p.heads, ", ", p.head_dim, "]");
  GRAFT_CHECK(rd > 0 && rd % 2 == 0 && rd <= p.head_dim, name, ": rotary_dim = ", rd,
              " must be even, positive and <= head_dim = ", p.head_dim);
  if (p.batch * p.seq * p.heads == 0) return;
  GRAFT_CHECK(p.x && p.cos && p.sin && p.positions, name, ": null x, cos, sin or positions");
  const int64_t half = rd / 2;
  const int64_t sh = p.stride_h ? p.stride_h : p.head_dim;
  const int64_t ss = p.stride_s ? p.stride_s : p.heads * p.head_dim;
  const int64_t sb = p.stride_b ? p.stride_b : p.seq * p.heads * p.head_dim;
  const int64_t psb = p.pos_stride_b < 0 ? p.seq : p.pos_stride_b;
  const float sign = forward ? 1.0f : -1.0f;
  auto* x = static_cast<float*>(p.x);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t s = 0; s < p.seq; ++s) {
      const int64_t pos = p.positions[b * psb + s];
      GRAFT_INPUT_CHECK(pos >= 0 && pos < p.max_positions, name, ": position ", pos, " at [batch ",
                        b, ", seq ", s, "] is outside the rotary table [0, ", p.max_positions, ")");
      const float* c = p.cos + pos * half;
      const float* sn = p.sin + pos * half;
      for (int64_t h = 0; h < p.heads; ++h) {
        float* xh = x + b * sb + s * ss + h * sh;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = xh[i], x2 = xh[i + half], si = sign * sn[i];
          xh[i] = x1 * c[i] - x2 * si;
          xh[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
  }
}

}  // namespace

void rope_fwd(const RopeParams& p) { rope_apply(p, true, "rope_fwd"); }
void rope_bwd(const RopeParams& p) { rope_apply(p, false, "rope_bwd"); }

}  // namespace cpu
}  // namespace graft
