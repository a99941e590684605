#include "framework/core/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "framework/core/error.h"

namespace graft {
namespace {

struct DTypeInfo {
  DType type;
  size_t size;
  const char* name;
  const char* st_name;
  bool is_float;
};

constexpr DTypeInfo kInfo[] = {
    {DType::kF32, 4, "f32", "F32", true},
    {DType::kF16, 2, "f16", "F16", true},
    {DType::kBF16, 2, "bf16", "BF16", true},
    {DType::kF8E4M3, 1, "fp8_e4m3", "F8_E4M3", true},
    {DType::kF8E5M2, 1, "fp8_e5m2", "F8_E5M2", true},
    {DType::kF64, 8, "f64", "F64", true},
    {DType::kI8, 1, "i8", "I8", false},
    {DType::kI16, 2, "i16", "I16", false},
    {DType::kI32, 4, "i32", "I32", false},
    {DType::kI64, 8, "i64", "I64", false},
    {DType::kU8, 1, "u8", "U8", false},
    {DType::kU16, 2, "u16", "U16", false},
    {DType::kU32, 4, "u32", "U32", false},
    {DType::kU64, 8, "u64", "U64", false},
    {DType::kBool, 1, "bool", "BOOL", false},
};

const DTypeInfo& info(DType t) {
  size_t i = static_cast<size_t>(t);
  GRAFT_CHECK(i < std::size(kInfo) && kInfo[i].type == t, "bad dtype ", i);
  return kInfo[i];
}

// Encodes a finite or non-finite float into a small float format with `exp_bits` exponent
// bits and `man_bits` mantissa bits, rounding to nearest even and saturating at `max_finite`.
// `nan_code` is the bit pattern used for NaN.
uint32_t encode_small_float(float x, int exp_bits, int man_bits, double max_finite,
                            uint32_t nan_code) {
  uint32_t sign = std::signbit(x) ? 1u : 0u;
  uint32_t sign_bit = sign << (exp_bits + man_bits);
  if (std::isnan(x)) return nan_code;
  double a = std::fabs(static_cast<double>(x));
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int min_normal_exp = 1 - bias;
  if (a == 0.0) return sign_bit;
  int e;
  std::frexp(a, &e);                               // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1;                                 // a = 1.f * 2^exp
  if (exp < min_normal_exp) exp = min_normal_exp;  // subnormal range: fixed quantum
  double quantum = std::ldexp(1.0, exp - man_bits);
  double q = std::nearbyint(a / quantum);  // default rounding mode: ties to even
  double r = q * quantum;
  if (r == 0.0) return sign_bit;  // below half the smallest subnormal: a signed zero
  if (r > max_finite || std::isinf(a)) r = max_finite;
  // Re-derive bits from the rounded value (rounding may have carried into the exponent).
  int re;
  std::frexp(r, &re);
  int rexp = re - 1;
  uint32_t bits;
  if (rexp < min_normal_exp) {
    bits = static_cast<uint32_t>(std::ldexp(r, man_bits - min_normal_exp));  // subnormal
  } else {
    double frac = std::ldexp(r, -rexp) - 1.0;
    uint32_t man = static_cast<uint32_t>(std::ldexp(frac, man_bits));
    bits = (static_cast<uint32_t>(rexp + bias) << man_bits) | man;
  }
  return sign_bit | bits;
}

float decode_small_float(uint32_t v, int exp_bits, int man_bits, bool ieee_special) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  uint32_t sign = (v >> (exp_bits + man_bits)) & 1u;
  uint32_t exp = (v >> man_bits) & ((1u << exp_bits) - 1);
  uint32_t man = v & ((1u << man_bits) - 1);
  double r;
  if (ieee_special && exp == (1u << exp_bits) - 1) {
    r = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp == 0) {
    r = std::ldexp(static_cast<double>(man), 1 - bias - man_bits);
  } else {
    r = std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -man_bits),
                   static_cast<int>(exp) - bias);
  }
  return static_cast<float>(sign ? -r : r);
}

template <class T>
void load_as_f64(const void* src, size_t n, double* out) {
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(s[i]);
}

double load_one(const uint8_t* p, DType t) {
  switch (t) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::kF64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
    case DType::kF16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return f16_to_f32(v);
    }
    case DType::kBF16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return bf16_to_f32(v);
    }
    case DType::kF8E4M3:
      return fp8_e4m3_to_f32(*p);
    case DType::kF8E5M2:
      return fp8_e5m2_to_f32(*p);
    case DType::kI8:
      return static_cast<int8_t>(*p);
    case DType::kU8:
      return *p;
    case DType::kBool:
      return *p ? 1.0 : 0.0;
    case DType::kI16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case DType::kU16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case DType::kI32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::kU32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::kI64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case DType::kU64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
  }
  GRAFT_CHECK(false, "unhandled dtype");
}

template <class T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

void store_one(uint8_t* p, DType t, double v) {
  switch (t) {
    case DType::kF32:
      return put(p, static_cast<float>(v));
    case DType::kF64:
      return put(p, v);
    case DType::kF16:
      return put(p, f32_to_f16(static_cast<float>(v)));
    case DType::kBF16:
      return put(p, f32_to_bf16(static_cast<float>(v)));
    case DType::kF8E4M3:
      *p = f32_to_fp8_e4m3(static_cast<float>(v));
      return;
    case DType::kF8E5M2:
      *p = f32_to_fp8_e5m2(static_cast<float>(v));
      return;
    case DType::kI8:
      return put(p, static_cast<int8_t>(v));
    case DType::kU8:
      return put(p, static_cast<uint8_t>(v));
    case DType::kBool:
      *p = v != 0.0;
      return;
    case DType::kI16:
      return put(p, static_cast<int16_t>(v));
    case DType::kU16:
      return put(p, static_cast<uint16_t>(v));
    case DType::kI32:
      return put(p, static_cast<int32_t>(v));
    case DType::kU32:
      return put(p, static_cast<uint32_t>(v));
    case DType::kI64:
      return put(p, static_cast<int64_t>(v));
    case DType::kU64:
      return put(p, static_cast<uint64_t>(v));
  }
  GRAFT_CHECK(false, "unhandled dtype");
}

}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
const char* dtype_name(DType t) { return info(t).name; }
const char* dtype_safetensors_name(DType t) { return info(t).st_name; }
bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_from_safetensors(std::string_view s) {
  for (const auto& i : kInfo)
    if (s == i.st_name) return i.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view s) {
  if (s == "float32") return DType::kF32;
  if (s == "bfloat16") return DType::kBF16;
  if (s == "float16") return DType::kF16;
  for (const auto& i : kInfo)
    if (s == i.name) return i.type;
  return std::nullopt;
}

uint16_t f32_to_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

float bf16_to_f32(uint16_t x) { return std::bit_cast<float>(static_cast<uint32_t>(x) << 16); }

uint16_t f32_to_f16(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xfe00u : 0x7e00u;
  if (std::isinf(x)) return std::signbit(x) ? 0xfc00u : 0x7c00u;
  // IEEE half: overflow beyond the rounding threshold of 65504 goes to infinity.
  if (std::fabs(x) >= 65520.0f) return std::signbit(x) ? 0xfc00u : 0x7c00u;
  return static_cast<uint16_t>(encode_small_float(x, 5, 10, 65504.0, 0x7e00u));
}

float f16_to_f32(uint16_t x) { return decode_small_float(x, 5, 10, /*ieee_special=*/true); }

uint8_t f32_to_fp8_e4m3(float x) {
  // OCP e4m3fn: no infinities, S.1111.111 is NaN, max finite 448.
  return static_cast<uint8_t>(encode_small_float(x, 4, 3, 448.0, 0x7fu));
}

float fp8_e4m3_to_f32(uint8_t x) {
  if ((x & 0x7fu) == 0x7fu) return std::numeric_limits<float>::quiet_NaN();
  return decode_small_float(x, 4, 3, /*ieee_special=*/false);
}

uint8_t f32_to_fp8_e5m2(float x) {
  return static_cast<uint8_t>(encode_small_float(x, 5, 2, 57344.0, 0x7fu));
}

float fp8_e5m2_to_f32(uint8_t x) { return decode_small_float(x, 5, 2, /*ieee_special=*/true); }

void convert_elements(const void* src, DType src_type, void* dst, DType dst_type, size_t n) {
  if (src_type == dst_type) {
    std::memcpy(dst, src, n * dtype_size(src_type));
    return;
  }
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(src_type), ds = dtype_size(dst_type);
  if (src_type == DType::kF32 && dst_type == DType::kBF16) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, s + i * 4, 4);
      put(d + i * 2, f32_to_bf16(v));
    }
    return;
  }
  for (size_t i = 0; i < n; ++i) store_one(d + i * ds, dst_type, load_one(s + i * ss, src_type));
}

}  // namespace graft
