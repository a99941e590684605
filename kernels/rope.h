// Rotary position embedding, rotate-half form (HF `rotate_half`, GPT-NeoX layout).
//
// Frequency table (HF `_compute_*_rope_parameters`, computed here in f64):
//   default: inv_freq_i = 1 / theta^(2i / rotary_dim),  i = 0 .. rotary_dim/2 - 1
//   linear:  inv_freq_i / factor
//   llama3:  wavelen_i = 2π / inv_freq_i; low = original_max / low_freq_factor,
//            high = original_max / high_freq_factor;
//            wavelen > low  -> inv_freq_i / factor;   wavelen < high -> inv_freq_i;
//            otherwise s = (original_max / wavelen - low_freq_factor) / (high_freq_factor -
//            low_freq_factor) and inv_freq_i = (1 - s) * inv_freq_i / factor + s * inv_freq_i.
//   cos[p, i] = cos(p * inv_freq_i) * attention_scaling, sin likewise; tables [max_pos, half] f32
//   with half = rotary_dim / 2.
// Apply (in place, on the first rotary_dim channels of every head; the rest pass through), with
// p = positions[b, s], c = cos[p, i], s = sin[p, i], for i < half:
//   forward:  y_i = x_i c - x_{i+half} s;   y_{i+half} = x_{i+half} c + x_i s
//   backward: the transposed rotation (dx_i = dy_i c + dy_{i+half} s;
//             dx_{i+half} = dy_{i+half} c - dy_i s), also in place.
// Accumulate rule: in place (=). A position outside [0, max_positions) is an InputError.
// The CPU path requires f32.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

enum class RopeScaling { kDefault, kLinear, kLlama3 };
// "default", "linear", "llama3"; nullopt otherwise.
std::optional<RopeScaling> rope_scaling_from_name(std::string_view name);
const char* rope_scaling_name(RopeScaling s);

struct RopeFreqParams {
  int64_t rotary_dim = 0;  // even, > 0
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kDefault;
  double factor = 1.0;                              // linear, llama3
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
  double attention_scaling = 1.0;                   // multiplies cos and sin
};

// Host functions (tables are built once, then copied to the device by the caller).
// inv_freq [rotary_dim / 2].
std::vector<double> rope_inv_freq(const RopeFreqParams& p);
// cos, sin: host buffers [max_positions, rotary_dim / 2] f32.
void rope_cos_sin_table(const RopeFreqParams& p, int64_t max_positions, float* cos, float* sin);

struct RopeParams {
  void* x = nullptr;                   // [batch, seq, heads, head_dim], rotated in place
  const float* cos = nullptr;          // [max_positions, rotary_dim / 2]
  const float* sin = nullptr;          // [max_positions, rotary_dim / 2]
  const int64_t* positions = nullptr;  // [batch, seq] (row stride pos_stride_b)
  int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  int64_t rotary_dim = 0;  // 0 = head_dim; even, <= head_dim
  int64_t max_positions = 0;
  // Element strides of x (0 = contiguous [batch, seq, heads, head_dim]); channels contiguous.
  // Non-zero strides let q and k be rotated inside a fused qkv buffer.
  int64_t stride_b = 0, stride_s = 0, stride_h = 0;
  int64_t pos_stride_b = -1;  // -1 = seq; 0 = one [seq] row shared by the batch
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void rope_fwd(const RopeParams& p);
void rope_bwd(const RopeParams& p);  // x holds dy on entry, dx on exit
}  // namespace cpu

inline void rope_fwd(const RopeParams& p) { GRAFT_DISPATCH(rope_fwd, p); }
inline void rope_bwd(const RopeParams& p) { GRAFT_DISPATCH(rope_bwd, p); }

}  // namespace graft
