// The bandwidth-bound FP8 cast machinery of the CUDA casts (fp8.cu: fp8_quantize,
// fp8_quantize_dbias, amax_reduce, fp8_act_quantize, fp8_act_bwd_quantize; fp8_norm.cu takes cast8
// and transpose_8x4). Math and conventions: kernels/fp8.h; results are bit for bit those of the CPU
// reference (the same f32 product x * scale, rounded by the same hardware conversion).
//
// Two kernels, both persistent (a grid of as many blocks as are resident at once, each block
// looping) so that a call folds at most a few thousand block amaxes into *amax:
//   - cast_flat_kernel: q only (or nothing: the amax pass). x and q are flat arrays of n
//     elements; each thread handles chunks of 8 elements (one 16-byte load of bf16 / f16, two of
//     f32; one 8-byte store), four chunks in flight per loop trip; the n % 8 last elements are
//     cast one by one. kVec false: the same loop one element at a time (unaligned pointers).
//   - cast_tiles_kernel: q and / or qt. Tiles of 64 rows x 128 columns; 256 threads, each
//     loading four 8-element chunks of the tile (rows lr, lr + 16, lr + 32, lr + 48) before
//     converting any, writing q with 8-byte stores and the fp8 bytes to a shared tile of 32-bit
//     words (row stride 33 words: no bank conflicts either way). The transposed copy: each thread
//     reads 8 words (8 rows x 4 columns), transposes the bytes in registers (__byte_perm) and
//     writes 4 qt rows of 8 bytes; a warp writes 8 qt rows x 32 contiguous bytes per store.
//     (ActSrc of a gated activation: two chunks at a time, four loads.) The next tile's first
//     loads are issued before this tile's transposed copy is written.
//     Needs rows % 8 == 0, cols % 8 == 0 (a chunk is either all inside or all outside) and
//     aligned pointers; the source of the values is a policy (CastSrc: x itself; ActSrc: the
//     activation of h, fp8_act_quantize's fused kernel; ActBwdSrc: the activation's backward,
//     fp8_act_bwd_quantize's).
//     kDbias (fp8_quantize_dbias, the bias gradient fused into the grad-output cast): each
//     thread also adds its 4 rows x 8 columns of the f32 values (before the scale, so the sums
//     are of the high-precision x) in row order; a shuffle adds the two row groups of a warp, the
//     8 warps' sums go through shared memory and 128 threads add them in warp order, writing the
//     tile's f32 column sums to partials[tile row][column] ([ceil(rows / 64), cols]); a second
//     kernel (fp8.cu) adds each column's partials in tile order in f64. The order of every
//     addition is fixed, so the result does not depend on scheduling.
// amax: the max of |x| bits (non-negative floats order like their bits; any NaN is above +inf
// and is made 0x7fffffff, fp8_math::abs_key's NaN, before the block's one atomicMax).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/activation_math.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_math.cuh"

namespace graft::cuda::fp8_cast {

constexpr int kThreads = 256;
constexpr int kTileRows = 64, kTileCols = 128;

__device__ __forceinline__ uint32_t abs_bits(float v) { return __float_as_uint(v) & 0x7fffffffu; }
__device__ __forceinline__ int nan_canonical(uint32_t key) {
  return key > 0x7f800000u ? 0x7fffffff : static_cast<int>(key);
}

template <bool kE4M3>
__device__ __forceinline__ uint32_t cvt2(float a, float b) {
  // The hardware cvt.rn.satfinite.{e4m3,e5m2}x2.f32: byte 0 = a, byte 1 = b (the single-value
  // fp8_math::to_fp8 is the same instruction with a zero partner).
  return __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, kE4M3 ? __NV_E4M3 : __NV_E5M2);
}
template <bool kE4M3>
__device__ __forceinline__ uint8_t cvt1(float a) {
  return __nv_cvt_float_to_fp8(a, __NV_SATFINITE, kE4M3 ? __NV_E4M3 : __NV_E5M2);
}

// key = max(key, |v[k]|) for k = 0..7.
__device__ __forceinline__ void amax8(const float (&v)[8], uint32_t& key) {
#pragma unroll
  for (int k = 0; k < 8; ++k) key = max(key, abs_bits(v[k]));
}
// fp8(v[k] * s) for k = 0..7 as two words (byte k of the pair = element k), and amax8.
template <bool kE4M3>
__device__ __forceinline__ uint2 cast8(const float (&v)[8], float s, uint32_t& key) {
  amax8(v, key);
  const uint32_t w0 = cvt2<kE4M3>(v[0] * s, v[1] * s) | (cvt2<kE4M3>(v[2] * s, v[3] * s) << 16);
  const uint32_t w1 = cvt2<kE4M3>(v[4] * s, v[5] * s) | (cvt2<kE4M3>(v[6] * s, v[7] * s) << 16);
  return make_uint2(w0, w1);
}

// w[i]: bytes 0..3 = columns 0..3 of row i (8 rows). out[k]: bytes 0..7 = rows 0..7 of column k.
__device__ __forceinline__ void transpose_8x4(const uint32_t (&w)[8], uint2 (&out)[4]) {
  uint32_t col[4][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t* r = w + 4 * h;
    const uint32_t a01 = __byte_perm(r[0], r[1], 0x5140);  // r0.b0 r1.b0 r0.b1 r1.b1
    const uint32_t b01 = __byte_perm(r[0], r[1], 0x7362);  // r0.b2 r1.b2 r0.b3 r1.b3
    const uint32_t a23 = __byte_perm(r[2], r[3], 0x5140);
    const uint32_t b23 = __byte_perm(r[2], r[3], 0x7362);
    col[0][h] = __byte_perm(a01, a23, 0x5410);  // r0.b0 r1.b0 r2.b0 r3.b0
    col[1][h] = __byte_perm(a01, a23, 0x7632);  // r0.b1 r1.b1 r2.b1 r3.b1
    col[2][h] = __byte_perm(b01, b23, 0x5410);
    col[3][h] = __byte_perm(b01, b23, 0x7632);
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = make_uint2(col[k][0], col[k][1]);
}

// ---- value sources of the tile kernel: row r, columns c..c+7 (all inside, aligned) ------------
template <class T>
struct CastSrc {
  const T* x;  // [rows, cols]
  int64_t cols;
  // Chunks loaded before any is converted: four (64 bytes) of bf16 / f16, two of f32.
  static constexpr int kBatch = sizeof(T) == 4 ? 2 : 4;
  static constexpr int kMinBlocks = 4;  // resident blocks per SM: at most 64 registers
  using Raw = Pack8<T>;
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const {
    return *reinterpret_cast<const Pack8<T>*>(x + r * cols + c);
  }
  __device__ __forceinline__ void eval(const Raw& raw, float (&v)[8]) const {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = to_f32(raw.v[k]);
  }
};

// a = act(gate) * up (gated: row r of h is [gate | up], 2 cols wide) or act(h), in f32.
template <class T, Activation A>
struct ActSrc {
  const T* h;  // [rows, cols] or, gated, [rows, 2 cols]
  int64_t cols;
  // Gated: two chunks (four 16-byte loads of bf16) at a time, which keeps the registers (and so
  // the resident blocks for the activation's arithmetic) at those of the plain cast's four.
  static constexpr int kBatch = act_math::gated(A) ? 2 : 4;
  static constexpr int kMinBlocks = 3;
  struct Raw {
    Pack8<T> g, u;  // u: gated only
  };
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const {
    const T* row = h + r * (act_math::gated(A) ? 2 * cols : cols);
    Raw raw;
    raw.g = *reinterpret_cast<const Pack8<T>*>(row + c);
    if constexpr (act_math::gated(A)) raw.u = *reinterpret_cast<const Pack8<T>*>(row + cols + c);
    return raw;
  }
  __device__ __forceinline__ void eval(const Raw& raw, float (&v)[8]) const {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[k] = act_math::act_f<A>(to_f32(raw.g.v[k]));
      if constexpr (act_math::gated(A)) v[k] *= to_f32(raw.u.v[k]);
    }
  }
};

// dh = the activation's backward with activation.cu's formulas: gated, output column c < cols is
// dgate = da up act'(gate) and c >= cols is dup = da act(gate) (at column c mod cols of gate, up
// and da: cols % 8 == 0, so a chunk lies in one half); not gated, dh = da act'(h).
template <class T, Activation A>
struct ActBwdSrc {
  const T* da;   // [rows, cols]
  const T* h;    // [rows, 2 cols] gated, else [rows, cols]
  int64_t cols;  // of da
  // One chunk (three 16-byte loads) at a time and three blocks per SM (at most 85 registers, no
  // spills): the act and act' arithmetic needs the warps more than the loads need batching (two
  // chunks at two blocks per SM measured 0.482 ms at the 1B shape on the H200, slower than
  // activation_bwd + the cast; this setting is not measured yet).
  static constexpr int kBatch = 1;
  static constexpr int kMinBlocks = 3;
  struct Raw {
    Pack8<T> d, g, u;  // u: the gate half of a gated dh only
    bool up_half;
  };
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const {
    Raw raw;
    if constexpr (act_math::gated(A)) {
      raw.up_half = c >= cols;
      const int64_t cc = raw.up_half ? c - cols : c;
      const T* hr = h + r * 2 * cols;
      raw.d = *reinterpret_cast<const Pack8<T>*>(da + r * cols + cc);
      raw.g = *reinterpret_cast<const Pack8<T>*>(hr + cc);
      if (!raw.up_half) raw.u = *reinterpret_cast<const Pack8<T>*>(hr + cols + cc);
    } else {
      raw.up_half = false;
      raw.d = *reinterpret_cast<const Pack8<T>*>(da + r * cols + c);
      raw.g = *reinterpret_cast<const Pack8<T>*>(h + r * cols + c);
    }
    return raw;
  }
  __device__ __forceinline__ void eval(const Raw& raw, float (&v)[8]) const {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float d = to_f32(raw.d.v[k]), a = to_f32(raw.g.v[k]);
      if constexpr (act_math::gated(A))
        v[k] = raw.up_half ? d * act_math::act_f<A>(a)
                           : d * to_f32(raw.u.v[k]) * act_math::act_df<A>(a);
      else
        v[k] = d * act_math::act_df<A>(a);
    }
  }
};

// ---- kernels -----------------------------------------------------------------------------------
template <class T, bool kE4M3, bool kVec>
__global__ void __launch_bounds__(kThreads)
    cast_flat_kernel(const T* __restrict__ x, uint8_t* __restrict__ q, int64_t n,
                     const float* scale, float* amax, float* scale_inv) {
  const float s = scale ? *scale : 0.0f;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  const int64_t first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  uint32_t key = 0;
  int64_t tail = 0;  // the first element cast one at a time
  if constexpr (kVec) {
    const int64_t chunks = n / 8;
    int64_t i = first;
    for (; i + 3 * stride < chunks; i += 4 * stride) {
      Pack8<T> raw[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) raw[p] = reinterpret_cast<const Pack8<T>*>(x)[i + p * stride];
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = to_f32(raw[p].v[k]);
        if (q)
          reinterpret_cast<uint2*>(q)[i + p * stride] = cast8<kE4M3>(v, s, key);
        else
          amax8(v, key);
      }
    }
    for (; i < chunks; i += stride) {
      const Pack8<T> raw = reinterpret_cast<const Pack8<T>*>(x)[i];
      float v[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = to_f32(raw.v[k]);
      if (q)
        reinterpret_cast<uint2*>(q)[i] = cast8<kE4M3>(v, s, key);
      else
        amax8(v, key);
    }
    tail = chunks * 8;
  }
  for (int64_t i = tail + first; i < n; i += stride) {
    const float v = to_f32(x[i]);
    key = max(key, abs_bits(v));
    if (q) q[i] = cvt1<kE4M3>(v * s);
  }
  if (amax) fp8_math::block_amax(nan_canonical(key), amax);
  if (scale_inv && blockIdx.x == 0 && threadIdx.x == 0) *scale_inv = 1.0f / s;
}

// Batch p0 of tile i's chunks of this thread (rows lr + 16 (p0 + p), columns lc..lc+7) into raw:
// those inside.
template <class S>
__device__ __forceinline__ void load_batch(const S& src, typename S::Raw (&raw)[S::kBatch],
                                           uint32_t i, int p0, uint32_t tiles_c, int64_t rows,
                                           int64_t cols, int lr, int lc) {
  const uint32_t tr = i / tiles_c;
  const int64_t r0 = int64_t(tr) * kTileRows, c = int64_t(i - tr * tiles_c) * kTileCols + lc;
#pragma unroll
  for (int p = 0; p < S::kBatch; ++p) {
    const int64_t r = r0 + lr + 16 * (p0 + p);
    if (r < rows && c < cols) raw[p] = src.load(r, c);
  }
}

// Resident blocks per SM the tile kernel is compiled for: the column sums of kDbias take 8 more
// registers per thread, so that variant asks for at most 3 blocks (85 registers; it takes 80, no
// spills; held to 64 for 4 blocks, the bf16 variant spills 52 bytes, nvcc 13, sm_90a).
template <class S, bool kDbias>
constexpr int tile_min_blocks() {
  return kDbias && S::kMinBlocks > 3 ? 3 : S::kMinBlocks;
}

// Each block walks tiles blockIdx.x, + gridDim.x, ...; the next tile's first batch is loaded
// before this tile's transposed copy is written, so loads stay in flight across the barrier.
// partials: kDbias only, [ceil(rows / 64), cols] f32, every entry written.
template <class S, bool kE4M3, bool kDbias = false>
__global__ void __launch_bounds__(kThreads, (tile_min_blocks<S, kDbias>()))
    cast_tiles_kernel(S src, uint8_t* __restrict__ q, uint8_t* __restrict__ qt, int64_t rows,
                      int64_t cols, uint32_t tiles_c, uint32_t ntiles, const float* scale,
                      float* amax, float* scale_inv, float* __restrict__ partials) {
  __shared__ uint32_t tile[kTileRows][kTileCols / 4 + 1];
  // kDbias: the column sums of each warp's 32 rows of the tile (unused otherwise).
  __shared__ __align__(16) float colsum[kDbias ? kThreads / 32 : 1][kDbias ? kTileCols : 4];
  const float s = *scale;
  const int t = threadIdx.x;
  const int lr = t / 16, lc = (t % 16) * 8;  // load: tile rows lr + 16 p, columns lc..lc+7
  const int lane = t % 32, warp = t / 32;
  const int g = (warp % 4) * 8 + lane % 8;  // transpose: tile columns 4g..4g+3
  const int j = (warp / 4) * 4 + lane / 8;  //            tile rows 8j..8j+7
  uint32_t key = 0;
  float acc[8];  // kDbias: this thread's column sums over its rows of the current tile
#pragma unroll
  for (int k = 0; k < 8; ++k) acc[k] = 0.0f;
  typename S::Raw raw[S::kBatch];
  if (blockIdx.x < ntiles) load_batch(src, raw, blockIdx.x, 0, tiles_c, rows, cols, lr, lc);
  for (uint32_t i = blockIdx.x; i < ntiles; i += gridDim.x) {
    const uint32_t ti = i / tiles_c;  // 32-bit: the launcher checks ntiles < 2^31
    const int64_t r0 = int64_t(ti) * kTileRows, c0 = int64_t(i - ti * tiles_c) * kTileCols;
    const int64_t c = c0 + lc;
#pragma unroll
    for (int p0 = 0; p0 < 4; p0 += S::kBatch) {
#pragma unroll
      for (int p = 0; p < S::kBatch; ++p) {  // raw holds batch p0 of tile i
        const int rr = lr + 16 * (p0 + p);
        const int64_t r = r0 + rr;
        if (r < rows && c < cols) {
          float v[8];
          src.eval(raw[p], v);
          if constexpr (kDbias) {
#pragma unroll
            for (int k = 0; k < 8; ++k) acc[k] += v[k];
          }
          const uint2 b = cast8<kE4M3>(v, s, key);
          if (q) *reinterpret_cast<uint2*>(q + r * cols + c) = b;
          if (qt) {
            tile[rr][lc / 4] = b.x;
            tile[rr][lc / 4 + 1] = b.y;
          }
        }
      }
      if (p0 + S::kBatch < 4)
        load_batch(src, raw, i, p0 + S::kBatch, tiles_c, rows, cols, lr, lc);
      else if (i + gridDim.x < ntiles)
        load_batch(src, raw, i + gridDim.x, 0, tiles_c, rows, cols, lr, lc);
    }
    if constexpr (kDbias) {  // lanes 0..15 and 16..31 hold rows lr and lr + 1 of columns lc..
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], 16);
      if (lane < 16) {
        float4* dst = reinterpret_cast<float4*>(&colsum[warp][lc]);
        dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] = 0.0f;
    }
    if (qt || kDbias) __syncthreads();
    if (qt) {
      const int64_t tc = c0 + 4 * g, tr = r0 + 8 * j;
      if (tc < cols && tr < rows) {  // cols % 8, rows % 8 == 0: all 4 columns, 8 rows inside
        uint32_t w[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) w[k] = tile[8 * j + k][g];
        uint2 out[4];
        transpose_8x4(w, out);
#pragma unroll
        for (int k = 0; k < 4; ++k) *reinterpret_cast<uint2*>(qt + (tc + k) * rows + tr) = out[k];
      }
    }
    if constexpr (kDbias) {
      if (t < kTileCols && c0 + t < cols) {
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < kThreads / 32; ++w) sum += colsum[w][t];
        partials[int64_t(ti) * cols + c0 + t] = sum;
      }
    }
    if (qt || kDbias) __syncthreads();  // before the next tile overwrites the shared tiles
  }
  if (amax) fp8_math::block_amax(nan_canonical(key), amax);
  if (scale_inv && blockIdx.x == 0 && t == 0) *scale_inv = 1.0f / s;
}

// ---- launch helpers ----------------------------------------------------------------------------
// Blocks of kThreads of `kernel` resident on the current device at once (every GPU of a host is
// taken to be of one kind: callers cache the figure per kernel).
template <class K>
int resident_blocks(K kernel) {
  int dev = 0, sms = 0, per_sm = 0;
  GRAFT_CUDA_CHECK(cudaGetDevice(&dev));
  GRAFT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  GRAFT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  return (sms > 0 ? sms : 1) * (per_sm > 0 ? per_sm : 1);
}

inline bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// The flat cast of n elements of x (q optional: without it, only the amax, and scale and
// scale_inv may be null).
template <class T, bool kE4M3>
void launch_flat(const T* x, uint8_t* q, int64_t n, const float* scale, float* amax,
                 float* scale_inv, cudaStream_t stream) {
  const bool vec = aligned_for_8(x, sizeof(T)) && aligned(q, 8);
  const int64_t items = vec ? n / 8 + n % 8 : n;
  const int64_t want = ceil_div(items > 0 ? items : 1, kThreads);
  if (vec) {
    static const int resident = resident_blocks(cast_flat_kernel<T, kE4M3, true>);
    const unsigned grid = static_cast<unsigned>(want < resident ? want : resident);
    cast_flat_kernel<T, kE4M3, true>
        <<<grid, kThreads, 0, stream>>>(x, q, n, scale, amax, scale_inv);
  } else {
    static const int resident = resident_blocks(cast_flat_kernel<T, kE4M3, false>);
    const unsigned grid = static_cast<unsigned>(want < resident ? want : resident);
    cast_flat_kernel<T, kE4M3, false>
        <<<grid, kThreads, 0, stream>>>(x, q, n, scale, amax, scale_inv);
  }
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

// Whether the tile kernel takes [rows, cols] with these pointers (src: the first value row).
inline bool tiles_fit(int64_t rows, int64_t cols, const void* src, size_t src_bytes, const void* q,
                      const void* qt) {
  return rows % 8 == 0 && cols % 8 == 0 && aligned_for_8(src, src_bytes) && aligned(q, 8) &&
         aligned(qt, 8);
}

// partials: kDbias only, [ceil(rows / 64), cols] f32 (the tiles' column sums).
template <class S, bool kE4M3, bool kDbias = false>
void launch_tiles(const S& src, uint8_t* q, uint8_t* qt, int64_t rows, int64_t cols,
                  const float* scale, float* amax, float* scale_inv, cudaStream_t stream,
                  float* partials = nullptr) {
  static const int resident = resident_blocks(cast_tiles_kernel<S, kE4M3, kDbias>);
  const int64_t tiles_c = ceil_div(cols, kTileCols);
  const int64_t ntiles = ceil_div(rows, kTileRows) * tiles_c;
  GRAFT_CHECK(ntiles < (int64_t{1} << 31), "fp8 cast: [", rows, ", ", cols,
              "] has too many 64x128 tiles for the tile kernel");
  GRAFT_CHECK(!kDbias || partials, "fp8 cast: the bias gradient needs its partials buffer");
  const unsigned grid = static_cast<unsigned>(ntiles < resident ? ntiles : resident);
  cast_tiles_kernel<S, kE4M3, kDbias><<<grid, kThreads, 0, stream>>>(
      src, q, qt, rows, cols, static_cast<uint32_t>(tiles_c), static_cast<uint32_t>(ntiles), scale,
      amax, scale_inv, partials);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace graft::cuda::fp8_cast
