// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, and the masked form that
// TFRecord framing stores: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
// Check value: crc32c("123456789") = 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace graft::io {

// Continues `crc` (0 to start) over n bytes.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace graft::io
