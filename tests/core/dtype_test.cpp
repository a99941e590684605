// Float format conversions: round-to-nearest-even, NaN, saturation, subnormals, round trips.
#include "framework/core/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

namespace graft {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 lies between 1+2^-7 (odd mantissa) and 1+2^-6: ties to even -> 1+2^-6.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  // Just above the tie rounds up.
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST(DType, F16Conversions) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);                          // overflow -> inf (IEEE)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);         // smallest subnormal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie -> even
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  for (uint32_t b = 0; b < 0x7c00; b += 7) EXPECT_EQ(f32_to_f16(f16_to_f32(b)), b) << b;
}

TEST(DType, Fp8E4M3SaturatesAndRounds) {
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(448.0f)), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1000.0f)), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(-1e30f)), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(std::numeric_limits<float>::infinity())), 448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(f32_to_fp8_e4m3(NAN))));
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(std::ldexp(1.0f, -9))), std::ldexp(1.0f, -9));
  // 1 + 1/16 is the tie between 1 and 1.125: ties to even -> 1.
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.0625f)), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(1.1875f)), 1.25f);
  for (uint32_t b = 0; b < 0x7f; ++b) EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(b)), b) << b;
}

TEST(DType, Fp8E5M2SaturatesAndRounds) {
  EXPECT_EQ(fp8_e5m2_to_f32(f32_to_fp8_e5m2(57344.0f)), 57344.0f);
  EXPECT_EQ(fp8_e5m2_to_f32(f32_to_fp8_e5m2(1e9f)), 57344.0f);
  EXPECT_EQ(fp8_e5m2_to_f32(f32_to_fp8_e5m2(1.125f)), 1.0f);  // tie -> even
  EXPECT_EQ(fp8_e5m2_to_f32(f32_to_fp8_e5m2(std::ldexp(1.0f, -16))), std::ldexp(1.0f, -16));
  for (uint32_t b = 0; b < 0x7c; ++b) EXPECT_EQ(f32_to_fp8_e5m2(fp8_e5m2_to_f32(b)), b) << b;
}

// Values below half the smallest subnormal round to a signed zero (they once produced garbage
// bits: 7.4e-5 became e4m3 0xf8 = -256).
TEST(DType, TinyValuesRoundToSignedZero) {
  for (float x : {7.37905502e-05f, 1e-30f, 1e-40f}) {
    EXPECT_EQ(f32_to_fp8_e4m3(x), 0x00u) << x;
    EXPECT_EQ(f32_to_fp8_e4m3(-x), 0x80u) << x;
    EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(x)), 0.0f) << x;
  }
  EXPECT_EQ(f32_to_fp8_e5m2(1e-6f), 0x00u);  // e5m2's smallest subnormal is 2^-16 = 1.5e-5
  EXPECT_EQ(f32_to_fp8_e5m2(-1e-6f), 0x80u);
  EXPECT_EQ(f32_to_f16(1e-8f), 0x0000u);  // f16's is 2^-24 = 6e-8
  EXPECT_EQ(f32_to_f16(-1e-8f), 0x8000u);
  // Just above half the smallest subnormal rounds up to it.
  EXPECT_EQ(f32_to_fp8_e4m3(0.0011f), 0x01u);  // 2^-9 = 0.00195; half is 0.00098
}

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3, DType::kF8E5M2,
                  DType::kI32, DType::kI64, DType::kBool, DType::kU64}) {
    EXPECT_EQ(dtype_from_safetensors(dtype_safetensors_name(t)), t);
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_FALSE(dtype_from_safetensors("F4").has_value());
}

}  // namespace
}  // namespace graft
