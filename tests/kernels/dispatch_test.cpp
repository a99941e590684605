// Dispatch: a CUDA device on a family without a registered CUDA kernel fails loudly with an
// InputError naming the kernel, instead of running on the CPU.
#include "kernels/dispatch.h"

#include <gtest/gtest.h>

#include <string>

#include "framework/core/error.h"
#include "kernels/norm.h"

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

}  // namespace
}  // namespace graft
