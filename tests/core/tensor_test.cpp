#include "framework/core/tensor.h"

#include <gtest/gtest.h>

namespace graft {
namespace {

TEST(Tensor, ViewsShareStorageAndSliceTransposeCopy) {
  Tensor t = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tt = t.transpose(0, 1);
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.item({2, 1}), 5.0);
  Tensor c = tt.contiguous();
  EXPECT_EQ(c.to_f32_vector(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor col = t.slice(1, 1, 2);
  EXPECT_EQ(col.to_f32_vector(), (std::vector<float>{1, 2, 4, 5}));
  t.data<float>()[4] = 40;
  EXPECT_EQ(col.item({1, 0}), 40.0);
  EXPECT_EQ(t.view({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_THROW(tt.view({6}), Error);
}

TEST(Tensor, DtypeConversionAndChecks) {
  Tensor t = Tensor::from_vector(std::vector<float>{1.5f, -2.0f, 3.25f}, {3});
  Tensor b = t.to(DType::kBF16);
  EXPECT_EQ(b.nbytes(), 6u);
  EXPECT_EQ(b.to(DType::kF32).to_f32_vector(), t.to_f32_vector());
  EXPECT_THROW(b.data<float>(), Error);
  Tensor s = Tensor::zeros({2, 2}, DType::kF32);
  s.slice(0, 1, 1).copy_from(Tensor::from_vector(std::vector<float>{7, 8}, {1, 2}).to(DType::kF16));
  EXPECT_EQ(s.to_f32_vector(), (std::vector<float>{0, 0, 7, 8}));
}

TEST(Tensor, CudaWithoutBackendIsAnInputError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda()), InputError);
}

}  // namespace
}  // namespace graft
