// Dispatch: a CUDA device on a family without a registered CUDA kernel fails loudly with an
// InputError naming the kernel, instead of running on the CPU.
#include "kernels/dispatch.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "framework/core/error.h"
#include "kernels/fp8.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/profile.h"

namespace graft {
namespace {

TEST(Dispatch, CudaDeviceWithoutCudaKernelIsInputErrorNamingIt) {
  if (kernels::has_cuda_kernel("rmsnorm_fwd"))
    GTEST_SKIP() << "this build registers a CUDA rmsnorm_fwd (covered by tests/cuda)";
  NormFwdParams p;
  p.device = Device::cuda(0);
  try {
    rmsnorm_fwd(p);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm_fwd"), std::string::npos) << e.what();
  }
}

TEST(Dispatch, CpuKernelRefusesCudaDeviceWhenCalledDirectly) {
  NormFwdParams p;
  p.device = Device::cuda(0);
  EXPECT_THROW(cpu::rmsnorm_fwd(p), Error);
}

// The per-shape profile names (GRAFT_PROFILE_SHAPES) carry what tells two GEMMs apart: the
// shape, both transposes, the dtypes, batch and accumulation.
TEST(ProfileNames, GemmNamesCarryShapeLayoutDtypesAndAccumulation) {
  GemmParams g;
  g.m = 8192;
  g.n = 2048;
  g.k = 3072;
  g.trans_b = true;
  g.dtype = DType::kBF16;
  g.c_dtype = DType::kBF16;
  EXPECT_EQ(gemm_profile_name(g), "gemm 8192x2048x3072 NT bf16->bf16");
  g.trans_a = true;
  g.trans_b = false;
  g.c_dtype = DType::kF32;
  g.beta = 1.0f;
  g.batch = 4;
  EXPECT_EQ(gemm_profile_name(g), "gemm 8192x2048x3072 TN bf16->f32 batch 4 +=");
  Fp8GemmParams f;
  f.m = 16;
  f.n = 32;
  f.k = 48;
  f.b_dtype = DType::kF8E5M2;
  f.c_dtype = DType::kF32;
  f.beta = 1.0f;
  EXPECT_EQ(fp8_gemm_profile_name(f), "fp8_gemm 16x32x48 fp8_e4m3 x fp8_e5m2->f32 +=");
}

// GRAFT_PROFILE_SHAPES: 1 splits by shape, 0 or unset does not, anything else is an InputError
// naming the variable (and the profile that threw is not left active).
TEST(ProfileNames, ShapesSwitchFromTheEnvironment) {
  const char* old = std::getenv("GRAFT_PROFILE_SHAPES");
  const std::string saved = old ? old : "";
  setenv("GRAFT_PROFILE_SHAPES", "1", 1);
  EXPECT_TRUE(kernels::KernelProfile().by_shape());
  setenv("GRAFT_PROFILE_SHAPES", "0", 1);
  EXPECT_FALSE(kernels::KernelProfile().by_shape());
  setenv("GRAFT_PROFILE_SHAPES", "yes", 1);
  try {
    kernels::KernelProfile p;
    ADD_FAILURE() << "GRAFT_PROFILE_SHAPES=yes accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("GRAFT_PROFILE_SHAPES = 'yes' (expected 0 or 1)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(kernels::active_profile(), nullptr);
  if (old)
    setenv("GRAFT_PROFILE_SHAPES", saved.c_str(), 1);
  else
    unsetenv("GRAFT_PROFILE_SHAPES");
}

}  // namespace
}  // namespace graft
