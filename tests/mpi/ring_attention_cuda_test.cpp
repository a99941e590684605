// Ring attention on CUDA tensors under mpirun (cp = the world size): the MPI-staged backend (any
// number of ranks per GPU, e.g. -np 2 on one GPU) and NCCL (one GPU per rank), f32 and bf16,
// against the CPU reference's full attention of the same (rounded) inputs. Each chunk pair runs
// on the device's attention backend: cuDNN for the bf16 causal and unmasked pairs, the unfused
// kernels for windowed pairs with an offset, padding and documents (the log says which ran).
// Skipped without a GPU; the decision is the same on every rank.
//
// Tolerance (relative norm per tensor): f32 1e-5 (rounding order, as on the CPU); bf16 2e-2 (P
// and dS rounded to bf16 inside the kernels, outputs rounded to bf16).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "framework/model/context_parallel.h"
#include "layers/context_parallel/ring_attention.h"
#include "layers/reference/sdpa.h"
#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

struct GpuRingCase {
  const char* name;
  int64_t heads_q, heads_kv, head_dim, window;
  bool padding, segments;
  DType dt;
};

Tensor randn_rounded(const Shape& shape, uint32_t seed, DType dt) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(v, shape).to(dt).to(DType::kF32);
}

Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
  const int64_t B = t.size(0), S = t.size(1), row = t.size(2) * t.size(3);
  const int64_t n = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty({B, n, t.size(2), t.size(3)}, DType::kF32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(out.data<float>() + (b * n + i) * row,
                  t.data<float>() + (b * S + rows[static_cast<size_t>(i)]) * row,
                  static_cast<size_t>(row) * sizeof(float));
  return out;
}

double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

Tensor host_f32(const Tensor& t) { return t.to(Device::cpu()).to(DType::kF32); }

void run(const GpuRingCase& c, const std::string& backend) {
  ParallelConfig layout;
  layout.cp = world_info().size;
  layout.backend = backend;
  layout.timeout_s = 120;
  const Device dev = bind_local_device(Device::cuda(0), backend == "mpi");
  auto groups = make_parallel_groups(layout, world_info(), dev, "ring-cuda-test");
  ProcessGroup& cp = *groups->cp;
  const int64_t B = 2, S = 32 * cp.size(), D = c.head_dim, Hq = c.heads_q, Hkv = c.heads_kv;
  Tensor q = randn_rounded({B, S, Hq, D}, 1, c.dt), k = randn_rounded({B, S, Hkv, D}, 2, c.dt),
         v = randn_rounded({B, S, Hkv, D}, 3, c.dt), dout = randn_rounded({B, S, Hq, D}, 4, c.dt);
  std::vector<int64_t> pad(B * S, 1), seg(B * S, 0);
  for (int64_t s = 0; s < S; ++s) {
    if (s % 9 == 4 || s >= S - 5) pad[S + s] = 0;
    seg[s] = s * 3 / S;
    seg[S + s] = (s + 7) / 19;
  }
  Tensor padding = Tensor::from_vector(pad, {B, S}), segments = Tensor::from_vector(seg, {B, S});
  layers::SdpaOptions so;
  so.mask = c.padding ? AttnMask::kPaddingCausal : AttnMask::kCausal;
  so.window = c.window;
  if (c.padding) so.key_padding = padding;
  if (c.segments) so.segment_ids = segments;
  Tensor full = Tensor::empty(q.shape(), DType::kF32);
  layers::SdpaSaved saved;
  layers::sdpa_forward(q, k, v, so, full, &saved);
  Tensor fdq = Tensor::empty(q.shape(), DType::kF32), fdk = Tensor::empty(k.shape(), DType::kF32),
         fdv = Tensor::empty(v.shape(), DType::kF32);
  layers::sdpa_backward(dout, saved, fdq, fdk, fdv);

  const auto rows = cp_rows_of_rank(S, cp.rank(), cp.size());
  auto on_gpu = [&](const Tensor& t) { return take_rows(t, rows).to(c.dt).to(dev); };
  layers::RingAttnOptions ro;
  ro.window = c.window;
  std::shared_ptr<layers::RingAttnSaved> rs;
  Tensor out = layers::ring_attention_forward(
      cp, on_gpu(q), on_gpu(k), on_gpu(v),
      c.padding ? take_columns(padding, rows).to(dev) : Tensor(),
      c.segments ? take_columns(segments, rows).to(dev) : Tensor(), ro, &rs);
  Tensor dq, dk, dv;
  layers::ring_attention_backward(on_gpu(dout), *rs, dq, dk, dv);
  const double tol = c.dt == DType::kF32 ? 1e-5 : 2e-2;
  const std::string tag = std::string(c.name) + " " + backend;
  EXPECT_LE(rel_err(host_f32(out), take_rows(full, rows)), tol) << tag << " out";
  EXPECT_LE(rel_err(host_f32(dq), take_rows(fdq, rows)), tol) << tag << " dq";
  EXPECT_LE(rel_err(host_f32(dk), take_rows(fdk, rows)), tol) << tag << " dk";
  EXPECT_LE(rel_err(host_f32(dv), take_rows(fdv, rows)), tol) << tag << " dv";
  if (world_info().rank == 0)
    std::printf(
        "  %s: out %.2e, dq %.2e, dk %.2e, dv %.2e relative\n", tag.c_str(),
        rel_err(host_f32(out), take_rows(full, rows)), rel_err(host_f32(dq), take_rows(fdq, rows)),
        rel_err(host_f32(dk), take_rows(fdk, rows)), rel_err(host_f32(dv), take_rows(fdv, rows)));
}

class RingAttentionCuda : public ::testing::TestWithParam<GpuRingCase> {};

TEST_P(RingAttentionCuda, StagedBackendMatchesCpuFullAttention) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  run(GetParam(), "mpi");
}

TEST_P(RingAttentionCuda, NcclMatchesCpuFullAttention) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (world_info().local_size > device_backend().device_count())
    GTEST_SKIP() << "NCCL needs one GPU per rank";
  run(GetParam(), "nccl");
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RingAttentionCuda,
    ::testing::Values(GpuRingCase{"causal_gqa_bf16", 8, 2, 64, 0, false, false, DType::kBF16},
                      GpuRingCase{"window_bf16", 4, 1, 64, 21, false, false, DType::kBF16},
                      GpuRingCase{"documents_padding_bf16", 4, 2, 64, 0, true, true, DType::kBF16},
                      GpuRingCase{"causal_gqa_f32", 4, 2, 32, 0, false, false, DType::kF32},
                      GpuRingCase{"window_documents_f32", 4, 2, 32, 13, true, true, DType::kF32}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace graft
