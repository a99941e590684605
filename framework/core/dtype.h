// Element types. The set covers every dtype safetensors knows, so a checkpoint can be
// described exactly; compute happens in f32, bf16, f16 and the two fp8 formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace graft {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kF8E5M2,
  kF64,
  kI8,
  kI16,
  kI32,
  kI64,
  kU8,
  kU16,
  kU32,
  kU64,
  kBool,
};

// Bytes per element.
size_t dtype_size(DType t);
// Lower-case name used in logs and recipes: "f32", "bf16", "fp8_e4m3", "i64", ...
const char* dtype_name(DType t);
// The safetensors header spelling: "F32", "BF16", "F8_E4M3", ...
const char* dtype_safetensors_name(DType t);
std::optional<DType> dtype_from_safetensors(std::string_view s);
// Parses dtype_name() spellings (and "float32"/"bfloat16"/"float16" aliases).
std::optional<DType> dtype_from_name(std::string_view s);
bool dtype_is_float(DType t);

// Scalar conversions. All float narrowing rounds to nearest, ties to even. NaN stays NaN.
// fp8 conversions saturate: finite values beyond the largest finite value clamp to it
// (e4m3: 448, e5m2: 57344); infinities map to the largest finite value too (e4m3 has no inf).
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t x);
uint8_t f32_to_fp8_e4m3(float x);
float fp8_e4m3_to_f32(uint8_t x);
uint8_t f32_to_fp8_e5m2(float x);
float fp8_e5m2_to_f32(uint8_t x);

// Converts n elements between any two float or integer dtypes (through f64 for integers,
// through f32 for the narrow float formats). Integers convert by truncation toward zero.
void convert_elements(const void* src, DType src_type, void* dst, DType dst_type, size_t n);

}  // namespace graft
