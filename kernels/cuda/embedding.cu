// Embedding lookup on CUDA (the math is in kernels/embedding.h).
//
// Forward: one block per token copies scale * weight[id] into its output row.
// Backward, deterministic without float atomics (per-row ownership after a stable sort):
//   1. keys[t] = ids[t] (i32), vals[t] = t; an id outside [0, vocab) is reported (InputError at
//      the next synchronisation) and given the sentinel key `vocab`, which is skipped;
//   2. a stable CUB radix sort by key, so equal ids keep ascending t;
//   3. one block per sorted position; the block that starts a run of equal ids owns that
//      dweight row and adds scale * dy[t] for the run's t in ascending order — the same order
//      of f32 additions as the CPU reference.
// Vocab-parallel shards (vocab_total > 0): an id is checked against [0, vocab_total) and mapped
// to row id - vocab_start; a row outside [0, vocab) belongs to another rank (zero output row in
// the forward, the skipped sentinel key in the backward).
//   ids: [n] i64/i32;  weight: [vocab, hidden] T;  out, dy: [n, hidden] T;  dweight f32 (+=).
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/embedding.h"

namespace graft::cuda {
namespace {

template <class I, class T>
__global__ void embedding_fwd_kernel(const I* ids, const T* weight, T* out, int64_t vocab,
                                     int64_t start, int64_t total, int64_t hidden, float scale,
                                     InputErrorRecord* err) {
  const int64_t t = blockIdx.x;
  const int64_t id = static_cast<int64_t>(ids[t]);
  if (id < 0 || id >= total) {
    if (threadIdx.x == 0) report_input_error(err, kBadEmbeddingId, id, t, total);
    return;
  }
  const int64_t row = id - start;
  T* o = out + t * hidden;
  if (row < 0 || row >= vocab) {  // another vocab-parallel rank's row
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) o[j] = from_f32<T>(0.0f);
    return;
  }
  const T* w = weight + row * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    o[j] = from_f32<T>(scale * to_f32(w[j]));
  }
}

template <class I>
__global__ void embedding_keys_kernel(const I* ids, int32_t* keys, int32_t* vals, int64_t n,
                                      int64_t vocab, int64_t start, int64_t total,
                                      InputErrorRecord* err) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = static_cast<int64_t>(ids[t]);
    if (id < 0 || id >= total) report_input_error(err, kBadEmbeddingId, id, t, total);
    const int64_t row = id - start;
    const bool ok = id >= 0 && id < total && row >= 0 && row < vocab;
    keys[t] = ok ? static_cast<int32_t>(row) : static_cast<int32_t>(vocab);
    vals[t] = static_cast<int32_t>(t);
  }
}

template <class T>
__global__ void embedding_bwd_kernel(const int32_t* keys, const int32_t* vals, const T* dy,
                                     float* dweight, int64_t n, int64_t vocab, int64_t hidden,
                                     float scale) {
  const int64_t i = blockIdx.x;
  const int32_t key = keys[i];
  if (key >= vocab || (i > 0 && keys[i - 1] == key)) return;  // not the start of a run
  int64_t end = i + 1;
  while (end < n && keys[end] == key) ++end;
  float* dw = dweight + static_cast<int64_t>(key) * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    float acc = dw[j];
    for (int64_t r = i; r < end; ++r) {
      // Rounded multiply, then rounded add (no FMA contraction): the CPU reference's arithmetic.
      const float term = __fmul_rn(scale, to_f32(dy[static_cast<int64_t>(vals[r]) * hidden + j]));
      acc = __fadd_rn(acc, term);
    }
    dw[j] = acc;
  }
}

int embed_threads(int64_t hidden) { return hidden >= 256 ? 256 : row_threads(hidden); }

void launch_embedding_fwd(const EmbeddingFwdParams& p) {
  if (p.n == 0 || p.hidden == 0) return;
  GRAFT_CHECK(p.ids_dtype == DType::kI64 || p.ids_dtype == DType::kI32, "embedding_fwd: ids dtype ",
              dtype_name(p.ids_dtype), " (expected i64 or i32)");
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  InputErrorRecord* err = input_error_record(dev);
  const int64_t start = p.vocab_total > 0 ? p.vocab_start : 0;
  const int64_t total = p.vocab_total > 0 ? p.vocab_total : p.vocab;
  GRAFT_FLOAT_SWITCH(p.dtype, T, "embedding_fwd", {
    if (p.ids_dtype == DType::kI64) {
      embedding_fwd_kernel<int64_t, T>
          <<<static_cast<unsigned>(p.n), embed_threads(p.hidden), 0, s>>>(
              static_cast<const int64_t*>(p.ids), static_cast<const T*>(p.weight),
              static_cast<T*>(p.out), p.vocab, start, total, p.hidden, p.scale, err);
    } else {
      embedding_fwd_kernel<int32_t, T>
          <<<static_cast<unsigned>(p.n), embed_threads(p.hidden), 0, s>>>(
              static_cast<const int32_t*>(p.ids), static_cast<const T*>(p.weight),
              static_cast<T*>(p.out), p.vocab, start, total, p.hidden, p.scale, err);
    }
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_embedding_bwd(const EmbeddingBwdParams& p) {
  if (p.n == 0 || p.hidden == 0) return;
  GRAFT_CHECK(p.ids_dtype == DType::kI64 || p.ids_dtype == DType::kI32, "embedding_bwd: ids dtype ",
              dtype_name(p.ids_dtype), " (expected i64 or i32)");
  GRAFT_CHECK(p.vocab < (int64_t{1} << 30) && p.n < (int64_t{1} << 31),
              "embedding_bwd: vocab = ", p.vocab, ", n = ", p.n, " exceed the i32 sort keys");
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  InputErrorRecord* err = input_error_record(dev);
  const size_t n = static_cast<size_t>(p.n);
  Scratch buf(4 * n * sizeof(int32_t), dev, s);
  int32_t* keys_in = buf.as<int32_t>();
  int32_t* vals_in = keys_in + n;
  int32_t* keys_out = vals_in + n;
  int32_t* vals_out = keys_out + n;
  const int64_t start = p.vocab_total > 0 ? p.vocab_start : 0;
  const int64_t total = p.vocab_total > 0 ? p.vocab_total : p.vocab;
  if (p.ids_dtype == DType::kI64) {
    embedding_keys_kernel<<<grid_for(p.n, 256), 256, 0, s>>>(
        static_cast<const int64_t*>(p.ids), keys_in, vals_in, p.n, p.vocab, start, total, err);
  } else {
    embedding_keys_kernel<<<grid_for(p.n, 256), 256, 0, s>>>(
        static_cast<const int32_t*>(p.ids), keys_in, vals_in, p.n, p.vocab, start, total, err);
  }
  GRAFT_CUDA_CHECK_LAUNCH();
  int end_bit = 1;
  while ((int64_t{1} << end_bit) <= p.vocab) ++end_bit;  // keys lie in [0, vocab]
  size_t temp_bytes = 0;
  GRAFT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in,
                                                   vals_out, static_cast<int>(p.n), 0, end_bit, s));
  Scratch temp(temp_bytes, dev, s);
  GRAFT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as<void>(), temp_bytes, keys_in, keys_out,
                                                   vals_in, vals_out, static_cast<int>(p.n), 0,
                                                   end_bit, s));
  GRAFT_FLOAT_SWITCH(p.dtype, T, "embedding_bwd", {
    embedding_bwd_kernel<T><<<static_cast<unsigned>(p.n), embed_threads(p.hidden), 0, s>>>(
        keys_out, vals_out, static_cast<const T*>(p.dy), p.dweight, p.n, p.vocab, p.hidden,
        p.scale);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(embedding_fwd, EmbeddingFwdParams, cuda::launch_embedding_fwd);
GRAFT_REGISTER_CUDA_KERNEL(embedding_bwd, EmbeddingBwdParams, cuda::launch_embedding_bwd);
}  // namespace graft
