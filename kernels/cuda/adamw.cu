// AdamW and the global gradient norm on CUDA (the math is in kernels/adamw.h).
//
// Multi-tensor: up to kMaxTensors tensors per launch travel in the kernel's parameter block
// (CUDA 12.1+ allows 32 KiB of parameters). Each tensor is cut into chunks of kChunk elements;
// a block walks chunks b, b + grid, ... and finds each chunk's tensor by binary search over the
// chunk prefix sums. One launch covers every parameter of a model up to kMaxTensors tensors.
// Memory-bound (30 bytes per parameter with a bf16 copy): float4 loads and stores where aligned.
// Global norm: one launch over every gradient (up to kMaxNormTensors tensors in the parameter
// block, chunks of kNormChunk elements): each block sums g² in f64 over its chunks with 16-byte
// streaming loads, four in flight a thread, and writes its partial; the block that finishes last
// (a completion counter, zeroed by a 4-byte memset before the launch) adds the partials in index
// order (deterministic) and writes sqrt(sum) or the sum.
// With hyper.step_scalars the kernel reads lr and the bias corrections from device memory when it
// runs (a replayed CUDA graph); the clip/skip prologue reads norm_sq and loss likewise.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/adamw.h"
#include "kernels/cuda/common.cuh"

namespace graft::cuda {
namespace {

constexpr int kMaxTensors = 160;
constexpr int64_t kChunk = 4096;
constexpr int kThreads = 256;

struct AdamWPack {
  float* param[kMaxTensors];
  const float* grad[kMaxTensors];
  float* m[kMaxTensors];
  float* v[kMaxTensors];
  void* copy[kMaxTensors];
  int64_t n[kMaxTensors];
  float wd[kMaxTensors];
  int64_t chunk_start[kMaxTensors + 1];  // prefix sums of chunks per tensor
  int count;
};

constexpr int kMaxNormTensors = 1000;  // 24 KB of the 32 KiB parameter block
constexpr int64_t kNormChunk = 16384;  // floats: 4 float4 loads per thread, 4 times
struct NormPack {
  const float* grad[kMaxNormTensors];
  int64_t n[kMaxNormTensors];
  int64_t chunk_start[kMaxNormTensors + 1];
  int count;
};
static_assert(sizeof(NormPack) < 32000, "NormPack must fit the kernel parameter block");

__device__ __forceinline__ int find_tensor(const int64_t* chunk_start, int count, int64_t chunk) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {  // last tensor whose first chunk <= chunk
    const int mid = (lo + hi + 1) / 2;
    if (chunk_start[mid] <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

struct AdamWScalars {
  float lr, beta1, beta2, eps, grad_scale, step_size, bc2_sqrt;
  const float* norm_sq;  // null: grad_scale as given; else the device clip/skip prologue
  const float* loss;
  double max_norm;
  const float* step_scalars;  // null: lr, step_size, bc2_sqrt as given; else read from here
};

// The clip/skip prologue (kernels/adamw.h): every thread reads the two scalars (broadcast loads).
__device__ __forceinline__ bool device_scale(const AdamWScalars& h, float* scale) {
  *scale = h.grad_scale;
  if (!h.norm_sq) return true;
  const double norm = sqrt(static_cast<double>(*h.norm_sq));
  const float loss = h.loss ? *h.loss : 0.0f;
  if (!isfinite(norm) || !isfinite(loss)) return false;
  const double clip = (h.max_norm > 0 && norm > h.max_norm) ? h.max_norm / norm : 1.0;
  *scale = h.grad_scale * static_cast<float>(clip);
  return true;
}

// One element's update, the same bits on the vector and the scalar path: every operation is an
// explicitly rounded intrinsic, so the compiler cannot contract a multiply-add into an FMA in one
// inlined context and not in the other.
template <class C>
__device__ __forceinline__ void adamw_elem(float& p, float& m, float& v, float g, C* cp,
                                           float decay, float grad_scale, const AdamWScalars& h) {
  const float gi = __fmul_rn(g, grad_scale);
  const float mi = __fmaf_rn(h.beta1, m, __fmul_rn(1.0f - h.beta1, gi));
  const float vi = __fmaf_rn(h.beta2, v, __fmul_rn(__fmul_rn(1.0f - h.beta2, gi), gi));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), h.bc2_sqrt), h.eps);
  const float pi = __fsub_rn(__fmul_rn(p, decay), __fdiv_rn(__fmul_rn(h.step_size, mi), denom));
  p = pi;
  m = mi;
  v = vi;
  if (cp) *cp = from_f32<C>(pi);
}

__device__ __forceinline__ bool aligned(const void* p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Chunks whose param, grad, m, v are 16-byte aligned (and the copy 4·sizeof(C)) take float4
// loads and stores (16 bytes a thread per stream); the others, and tails, go element by element.
template <class C>
__global__ void adamw_kernel(const AdamWPack pk, AdamWScalars h) {
  if (h.step_scalars) {  // this step's values, written before the launch (or a graph's replay)
    h.lr = h.step_scalars[0];
    h.step_size = h.step_scalars[1];
    h.bc2_sqrt = h.step_scalars[2];
  }
  float grad_scale;
  if (!device_scale(h, &grad_scale)) return;  // skipped step: nothing written
  const int64_t total = pk.chunk_start[pk.count];
  for (int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = find_tensor(pk.chunk_start, pk.count, chunk);
    const int64_t begin = (chunk - pk.chunk_start[t]) * kChunk;
    const int64_t end = min(begin + kChunk, pk.n[t]);
    float* p = pk.param[t];
    float* m = pk.m[t];
    float* v = pk.v[t];
    const float* g = pk.grad[t];
    C* cp = static_cast<C*>(pk.copy[t]);
    const float decay = 1.0f - h.lr * pk.wd[t];
    int64_t i0 = begin;
    if (aligned(p + begin, 16) && aligned(m + begin, 16) && aligned(v + begin, 16) &&
        aligned(g + begin, 16) && (!cp || aligned(cp + begin, 4 * sizeof(C)))) {
      const int64_t nvec = (end - begin) / 4;
      for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
        const int64_t i = begin + 4 * j;
        float4 pv = *reinterpret_cast<const float4*>(p + i);
        float4 mv = *reinterpret_cast<const float4*>(m + i);
        float4 vv = *reinterpret_cast<const float4*>(v + i);
        const float4 gv = *reinterpret_cast<const float4*>(g + i);
        C c[4];
        C* cq = cp ? c : nullptr;
        adamw_elem<C>(pv.x, mv.x, vv.x, gv.x, cq ? cq + 0 : nullptr, decay, grad_scale, h);
        adamw_elem<C>(pv.y, mv.y, vv.y, gv.y, cq ? cq + 1 : nullptr, decay, grad_scale, h);
        adamw_elem<C>(pv.z, mv.z, vv.z, gv.z, cq ? cq + 2 : nullptr, decay, grad_scale, h);
        adamw_elem<C>(pv.w, mv.w, vv.w, gv.w, cq ? cq + 3 : nullptr, decay, grad_scale, h);
        *reinterpret_cast<float4*>(p + i) = pv;
        *reinterpret_cast<float4*>(m + i) = mv;
        *reinterpret_cast<float4*>(v + i) = vv;
        if (cp) {
          struct alignas(4 * sizeof(C)) Four {
            C e[4];
          } four{{c[0], c[1], c[2], c[3]}};
          *reinterpret_cast<Four*>(cp + i) = four;
        }
      }
      i0 = begin + 4 * nvec;
    }
    for (int64_t i = i0 + threadIdx.x; i < end; i += blockDim.x)
      adamw_elem<C>(p[i], m[i], v[i], g[i], cp ? cp + i : nullptr, decay, grad_scale, h);
  }
}

__device__ __forceinline__ double sumsq4(const float4 v) {
  const double x = v.x, y = v.y, z = v.z, w = v.w;
  return x * x + y * y + z * z + w * w;
}

// f64 sum of `acc` over the block (kThreads threads), valid in thread 0.
__device__ __forceinline__ double block_sum_f64(double acc, double* sh) {
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  return sh[0];
}

// Block b of this launch writes partials[offset + b]; the last of all `total_blocks` blocks
// (over every launch of the call, counted in *done) adds partials[0 .. total_blocks) in order.
__global__ void __launch_bounds__(kThreads)
    grad_norm_kernel(const NormPack pk, double* partials, unsigned* done, unsigned total_blocks,
                     int offset, float* out, bool squared) {
  __shared__ double sh[kThreads];
  __shared__ bool last;
  const int64_t total = pk.chunk_start[pk.count];
  double acc = 0.0;
  for (int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = find_tensor(pk.chunk_start, pk.count, chunk);
    const int64_t begin = (chunk - pk.chunk_start[t]) * kNormChunk;
    const int64_t end = min(begin + kNormChunk, pk.n[t]);
    const float* g = pk.grad[t] + begin;
    int64_t i0 = 0;
    if (aligned(g, 16)) {
      const float4* g4 = reinterpret_cast<const float4*>(g);
      const int64_t nvec = (end - begin) / 4;
      int64_t j = threadIdx.x;
      for (; j + 3 * kThreads < nvec; j += 4 * kThreads) {
        float4 a[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) a[u] = __ldcs(g4 + j + u * kThreads);
#pragma unroll
        for (int u = 0; u < 4; ++u) acc += sumsq4(a[u]);
      }
      for (; j < nvec; j += kThreads) acc += sumsq4(__ldcs(g4 + j));
      i0 = 4 * nvec;
    }
    for (int64_t i = i0 + threadIdx.x; i < end - begin; i += kThreads) {
      const double gi = g[i];
      acc += gi * gi;
    }
  }
  const double block = block_sum_f64(acc, sh);
  if (threadIdx.x == 0) {
    partials[offset + blockIdx.x] = block;
    __threadfence();  // the partial is visible before the ticket is taken
    last = atomicAdd(done, 1u) == total_blocks - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  acc = 0.0;
  for (unsigned i = threadIdx.x; i < total_blocks; i += kThreads) acc += __ldcg(partials + i);
  const double sum = block_sum_f64(acc, sh);
  if (threadIdx.x == 0) *out = static_cast<float>(squared ? sum : sqrt(sum));
}

int grid_for_chunks(int64_t chunks) {
  static const int sms = [] {
    int dev = 0, n = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 80;
  }();
  return static_cast<int>(std::min<int64_t>(chunks, int64_t{sms} * 8));
}

AdamWScalars scalars(const AdamWHyper& h) {
  GRAFT_CHECK(h.step >= 1, "adamw: step = ", h.step, " (1-based)");
  const AdamWStepScalars sc = adamw_step_scalars(h.lr, h.beta1, h.beta2, h.step);
  return AdamWScalars{sc.lr,       h.beta1,   h.beta2, h.eps,      h.grad_scale,  sc.step_size,
                      sc.bc2_sqrt, h.norm_sq, h.loss,  h.max_norm, h.step_scalars};
}

void adamw_launch_pack(const AdamWPack& pk, DType copy_dtype, const AdamWScalars& h,
                       cudaStream_t s) {
  const int64_t chunks = pk.chunk_start[pk.count];
  if (chunks == 0) return;
  const unsigned grid = static_cast<unsigned>(grid_for_chunks(chunks));
  GRAFT_FLOAT_SWITCH(copy_dtype, C, "adamw copy",
                     { adamw_kernel<C><<<grid, kThreads, 0, s>>>(pk, h); });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void run_adamw(const std::vector<AdamWTensor>& tensors, DType copy_dtype, const AdamWHyper& hyper,
               Device device, void* stream) {
  DeviceGuard g(device.index);
  cudaStream_t s = stream_or_current(stream, device);
  const AdamWScalars h = scalars(hyper);
  AdamWPack pk{};
  auto flush = [&] {
    adamw_launch_pack(pk, copy_dtype, h, s);
    pk = AdamWPack{};
  };
  for (const AdamWTensor& t : tensors) {
    if (t.n == 0) continue;
    const int i = pk.count;
    pk.param[i] = t.param;
    pk.grad[i] = t.grad;
    pk.m[i] = t.m;
    pk.v[i] = t.v;
    pk.copy[i] = t.param_copy;
    pk.n[i] = t.n;
    pk.wd[i] = t.weight_decay;
    pk.chunk_start[i + 1] = pk.chunk_start[i] + ceil_div(t.n, kChunk);
    if (++pk.count == kMaxTensors) flush();
  }
  if (pk.count) flush();
}

void launch_adamw_step(const AdamWParams& p) {
  AdamWTensor t{p.param, p.grad, p.m, p.v, p.param_copy, p.n, p.hyper.weight_decay};
  run_adamw({t}, p.copy_dtype, p.hyper, p.device, p.stream);
}

void launch_adamw_multi_step(const AdamWMultiParams& p) {
  run_adamw(p.tensors, p.copy_dtype, p.hyper, p.device, p.stream);
}

void launch_grad_norm(const GradNormParams& p) {
  GRAFT_CHECK(p.grads.size() == p.sizes.size(), "grad_norm: ", p.grads.size(), " grads but ",
              p.sizes.size(), " sizes");
  GRAFT_CHECK(p.out, "grad_norm: null out");
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  // One launch per kMaxNormTensors tensors (one for every model graft builds today).
  std::vector<NormPack> packs(1);
  for (size_t i = 0; i < p.grads.size(); ++i) {
    GRAFT_CHECK(p.sizes[i] >= 0 && (p.sizes[i] == 0 || p.grads[i]), "grad_norm: tensor ", i,
                " has size ", p.sizes[i], " or a null pointer");
    if (p.sizes[i] == 0) continue;
    if (packs.back().count == kMaxNormTensors) packs.emplace_back();
    NormPack& pk = packs.back();
    const int j = pk.count;
    pk.grad[j] = p.grads[i];
    pk.n[j] = p.sizes[i];
    pk.chunk_start[j + 1] = pk.chunk_start[j] + ceil_div(p.sizes[i], kNormChunk);
    ++pk.count;
  }
  // As many blocks as are resident at once (every block has the same share of chunks, so a
  // second partial wave would cost a whole wave's time).
  static const int resident = [] {
    int d = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&d);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, d);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, grad_norm_kernel, kThreads, 0);
    return std::max(sms, 1) * std::max(per_sm, 1);
  }();
  std::vector<int> grids;
  int64_t total_blocks = 0;
  for (const NormPack& pk : packs) {
    const int64_t chunks = pk.chunk_start[pk.count];
    grids.push_back(static_cast<int>(std::min<int64_t>(chunks, resident)));
    total_blocks += grids.back();
  }
  if (total_blocks == 0) {  // no elements: the norm is 0 (all-zero bits)
    GRAFT_CUDA_CHECK(cudaMemsetAsync(p.out, 0, sizeof(float), s));
    return;
  }
  // partials [total_blocks] f64, then the completion counter.
  Scratch scratch(static_cast<size_t>(total_blocks + 1) * sizeof(double), dev, s);
  double* partials = scratch.as<double>();
  auto* done = reinterpret_cast<unsigned*>(partials + total_blocks);
  GRAFT_CUDA_CHECK(cudaMemsetAsync(done, 0, sizeof(unsigned), s));
  int offset = 0;
  for (size_t i = 0; i < packs.size(); ++i) {
    if (!grids[i]) continue;
    grad_norm_kernel<<<grids[i], kThreads, 0, s>>>(
        packs[i], partials, done, static_cast<unsigned>(total_blocks), offset, p.out, p.squared);
    GRAFT_CUDA_CHECK_LAUNCH();
    offset += grids[i];
  }
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(adamw_step, AdamWParams, cuda::launch_adamw_step);
GRAFT_REGISTER_CUDA_KERNEL(adamw_multi_step, AdamWMultiParams, cuda::launch_adamw_multi_step);
GRAFT_REGISTER_CUDA_KERNEL(grad_norm, GradNormParams, cuda::launch_grad_norm);
}  // namespace graft
