// AdamW and the global gradient norm on CUDA (the math is in kernels/adamw.h).
//
// Multi-tensor: up to kMaxTensors tensors per launch travel in the kernel's parameter block
// (CUDA 12.1+ allows 32 KiB of parameters). Each tensor is cut into chunks of kChunk elements;
// a block walks chunks b, b + grid, ... and finds each chunk's tensor by binary search over the
// chunk prefix sums. One launch covers every parameter of a model up to kMaxTensors tensors.
// Memory-bound (30 bytes per parameter with a bf16 copy): float4 loads and stores where aligned.
// Global norm: per-block f64 partial sums of g² over the same chunking, then one block adds the
// partials in a fixed order (deterministic), writes sqrt(sum) or the sum.
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

struct NormPack {
  const float* grad[kMaxTensors];
  int64_t n[kMaxTensors];
  int64_t chunk_start[kMaxTensors + 1];
  int count;
};

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

__global__ void sumsq_partials_kernel(const NormPack pk, double* partials) {
  __shared__ double sh[kThreads];
  const int64_t total = pk.chunk_start[pk.count];
  double acc = 0.0;
  for (int64_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    const int t = find_tensor(pk.chunk_start, pk.count, chunk);
    const int64_t begin = (chunk - pk.chunk_start[t]) * kChunk;
    const int64_t end = min(begin + kChunk, pk.n[t]);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double gi = pk.grad[t][i];
      acc += gi * gi;
    }
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

// One block adds `count` partials (the previous launches' results) in a fixed order.
__global__ void sumsq_finish_kernel(const double* partials, int count, float* out, bool squared) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(squared ? sh[0] : sqrt(sh[0]));
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
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  return AdamWScalars{h.lr,
                      h.beta1,
                      h.beta2,
                      h.eps,
                      h.grad_scale,
                      static_cast<float>(h.lr / bc1),
                      static_cast<float>(std::sqrt(bc2)),
                      h.norm_sq,
                      h.loss,
                      h.max_norm};
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
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  // Partials of every launch go to one scratch array, finished by one block in order.
  std::vector<NormPack> packs(1);
  for (size_t i = 0; i < p.grads.size(); ++i) {
    if (p.sizes[i] == 0) continue;
    NormPack& pk = packs.back();
    const int j = pk.count;
    pk.grad[j] = p.grads[i];
    pk.n[j] = p.sizes[i];
    pk.chunk_start[j + 1] = pk.chunk_start[j] + ceil_div(p.sizes[i], kChunk);
    if (++pk.count == kMaxTensors) packs.emplace_back();
  }
  std::vector<int> grids;
  int total_partials = 0;
  for (const NormPack& pk : packs) {
    const int64_t chunks = pk.chunk_start[pk.count];
    grids.push_back(chunks ? grid_for_chunks(chunks) : 0);
    total_partials += grids.back();
  }
  Scratch partials(static_cast<size_t>(std::max(total_partials, 1)) * sizeof(double), dev, s);
  int offset = 0;
  for (size_t i = 0; i < packs.size(); ++i) {
    if (!grids[i]) continue;
    sumsq_partials_kernel<<<grids[i], kThreads, 0, s>>>(packs[i], partials.as<double>() + offset);
    GRAFT_CUDA_CHECK_LAUNCH();
    offset += grids[i];
  }
  sumsq_finish_kernel<<<1, kThreads, 0, s>>>(partials.as<double>(), total_partials, p.out,
                                             p.squared);
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(adamw_step, AdamWParams, cuda::launch_adamw_step);
GRAFT_REGISTER_CUDA_KERNEL(adamw_multi_step, AdamWMultiParams, cuda::launch_adamw_multi_step);
GRAFT_REGISTER_CUDA_KERNEL(grad_norm, GradNormParams, cuda::launch_grad_norm);
}  // namespace graft
