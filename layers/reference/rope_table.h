// Rotary tables shared by every attention layer (reference and TE-style): one cos/sin pair per
// (RopeConfig, head_dim, device), built on the host by kernels/rope.h and copied to the device
// once. A layer asks for at least the positions it needs; a longer table replaces a shorter one
// (holders of the old one keep it alive).
#pragma once

#include <cstdint>
#include <memory>

#include "framework/core/tensor.h"
#include "layers/decoder.h"

namespace graft::layers {

struct RopeTable {
  Tensor cos, sin;  // [max_positions, rotary_dim / 2] f32 on the device
  int64_t max_positions = 0;
  int64_t rotary_dim = 0;
};

// Validates the config (InputError naming the field) and returns a table covering at least
// `min_positions` positions.
std::shared_ptr<const RopeTable> rope_table(const RopeConfig& rope, int64_t head_dim,
                                            int64_t min_positions, Device device);

// Rotates x [B, S, H, D] (channels contiguous; any b/s/h strides) in place with positions
// [B, S] (i64). backward = true applies the transposed rotation (x holds dy on entry).
void rope_apply(Tensor& x, const Tensor& positions, const RopeTable& table, bool backward);

// The rotary positions needed by a call: offset + seq, or the cache length when decoding.
int64_t rope_positions_needed(const AttentionInputs& in);

}  // namespace graft::layers
