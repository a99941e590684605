// Rotary position embedding on CUDA, in place, rotate-half form (the math is in kernels/rope.h).
// One thread per (token, head, i < half) pair: it reads x_i and x_{i+half}, rotates them by the
// angle of the token's position and writes both back (forward), or applies the transposed
// rotation (backward). Channels >= rotary_dim are untouched. A position outside
// [0, max_positions) is reported through the device input-error record (InputError at the next
// synchronisation) and its token left unrotated. Heads whose half rotary width is a multiple of 8
// (with aligned strides and pointers) are rotated 8 pairs a thread with 16-byte loads.
//   x: [batch, seq, heads, head_dim] in T with element strides; cos/sin: [max_pos, half] f32;
//   positions: [batch, seq] i64 (row stride pos_stride_b).
#include "kernels/cuda/common.cuh"
#include "kernels/rope.h"

namespace graft::cuda {
namespace {

struct RopeGeom {
  int64_t batch, seq, heads, half, max_positions;
  int64_t stride_b, stride_s, stride_h, pos_stride_b;
};

template <class T, bool kBackward>
__global__ void rope_kernel(T* x, const float* cos_t, const float* sin_t, const int64_t* positions,
                            RopeGeom g, InputErrorRecord* err) {
  const int64_t total = g.batch * g.seq * g.heads * g.half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % g.half;
    const int64_t h = (idx / g.half) % g.heads;
    const int64_t s = (idx / (g.half * g.heads)) % g.seq;
    const int64_t b = idx / (g.half * g.heads * g.seq);
    const int64_t pos = positions[b * g.pos_stride_b + s];
    if (pos < 0 || pos >= g.max_positions) {
      report_input_error(err, kBadPosition, pos, b * g.seq + s, g.max_positions);
      continue;
    }
    const float c = cos_t[pos * g.half + i], sn = sin_t[pos * g.half + i];
    T* xp = x + b * g.stride_b + s * g.stride_s + h * g.stride_h;
    const float a = to_f32(xp[i]), bb = to_f32(xp[i + g.half]);
    if (kBackward) {
      xp[i] = from_f32<T>(a * c + bb * sn);
      xp[i + g.half] = from_f32<T>(bb * c - a * sn);
    } else {
      xp[i] = from_f32<T>(a * c - bb * sn);
      xp[i + g.half] = from_f32<T>(bb * c + a * sn);
    }
  }
}

// The same over units of 8 pairs (half % 8 == 0, strides % 8 == 0, x and the tables aligned for
// load8): 16-byte loads of x_i.. and x_{i+half}.., 32-byte loads of cos/sin, one index
// decomposition per 8 pairs; the per-pair arithmetic is the scalar kernel's.
template <class T, bool kBackward>
__global__ void rope_vec_kernel(T* x, const float* cos_t, const float* sin_t,
                                const int64_t* positions, RopeGeom g, InputErrorRecord* err) {
  const int64_t units = g.half / 8;
  const int64_t total = g.batch * g.seq * g.heads * units;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = (idx % units) * 8;
    const int64_t h = (idx / units) % g.heads;
    const int64_t s = (idx / (units * g.heads)) % g.seq;
    const int64_t b = idx / (units * g.heads * g.seq);
    const int64_t pos = positions[b * g.pos_stride_b + s];
    if (pos < 0 || pos >= g.max_positions) {
      report_input_error(err, kBadPosition, pos, b * g.seq + s, g.max_positions);
      continue;
    }
    float c[8], sn[8], a[8], bb[8], lo[8], hi[8];
    load8(cos_t + pos * g.half + i, c);
    load8(sin_t + pos * g.half + i, sn);
    T* xp = x + b * g.stride_b + s * g.stride_s + h * g.stride_h;
    load8(xp + i, a);
    load8(xp + i + g.half, bb);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if (kBackward) {
        lo[k] = a[k] * c[k] + bb[k] * sn[k];
        hi[k] = bb[k] * c[k] - a[k] * sn[k];
      } else {
        lo[k] = a[k] * c[k] - bb[k] * sn[k];
        hi[k] = bb[k] * c[k] + a[k] * sn[k];
      }
    }
    store8(xp + i, lo);
    store8(xp + i + g.half, hi);
  }
}

template <bool kBackward>
void rope(const RopeParams& p) {
  const char* name = kBackward ? "rope_bwd" : "rope_fwd";
  const int64_t rd = p.rotary_dim ? p.rotary_dim : p.head_dim;
  GRAFT_CHECK(rd > 0 && rd % 2 == 0 && rd <= p.head_dim, name, ": rotary_dim = ", rd,
              " must be even, > 0 and <= head_dim = ", p.head_dim);
  GRAFT_CHECK(p.max_positions > 0, name, ": max_positions = ", p.max_positions);
  RopeGeom g{p.batch,    p.seq,           p.heads,
             rd / 2,     p.max_positions, p.stride_b,
             p.stride_s, p.stride_h,      p.pos_stride_b < 0 ? p.seq : p.pos_stride_b};
  if (!g.stride_h) g.stride_h = p.head_dim;
  if (!g.stride_s) g.stride_s = p.heads * p.head_dim;
  if (!g.stride_b) g.stride_b = p.seq * p.heads * p.head_dim;
  const int64_t total = p.batch * p.seq * p.heads * g.half;
  if (total == 0) return;
  const int dev = p.device.index;
  DeviceGuard dg(dev);
  cudaStream_t s = stream_of(p);
  InputErrorRecord* err = input_error_record(dev);
  const size_t es = dtype_size(p.dtype);
  const bool vec = g.half % 8 == 0 && g.stride_b % 8 == 0 && g.stride_s % 8 == 0 &&
                   g.stride_h % 8 == 0 && aligned_for_8(p.x, es) &&
                   aligned_for_8(p.cos, sizeof(float)) && aligned_for_8(p.sin, sizeof(float));
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    if (vec)
      rope_vec_kernel<T, kBackward><<<grid_for(total / 8, 256), 256, 0, s>>>(
          static_cast<T*>(p.x), p.cos, p.sin, p.positions, g, err);
    else
      rope_kernel<T, kBackward><<<grid_for(total, 256), 256, 0, s>>>(static_cast<T*>(p.x), p.cos,
                                                                     p.sin, p.positions, g, err);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_rope_fwd(const RopeParams& p) { rope<false>(p); }
void launch_rope_bwd(const RopeParams& p) { rope<true>(p); }

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(rope_fwd, RopeParams, cuda::launch_rope_fwd);
GRAFT_REGISTER_CUDA_KERNEL(rope_bwd, RopeParams, cuda::launch_rope_bwd);
}  // namespace graft
