// UTF-8 helpers for the Hugging Face tokenizer pieces, and the GPT-2 byte alphabet.
//
// Invalid UTF-8 never fails and is never dropped: a byte that does not start a valid sequence
// counts as a one-byte character (so byte-level and byte-fallback encodings stay lossless).
// utf8_lossy() is Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one
// U+FFFD, which is what the HF decoders return for ids that end mid-character.
//
// ByteLevel alphabet (GPT-2 encoder.py bytes_to_unicode): bytes 33..126, 161..172 and 174..255
// map to the code point of the same value, the other 68 bytes to 256, 257, ... in byte order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace graft::tok {

// Length of the character at s[i]: its sequence length when valid (*valid = true), else the
// length of the longest valid prefix, at least 1 (*valid = false).
size_t utf8_scan(std::string_view s, size_t i, bool* valid = nullptr);
// Decodes the valid character at s[i] (utf8_scan(s, i) bytes); the byte value when invalid.
uint32_t utf8_code_point(std::string_view s, size_t i);
std::string utf8_encode(uint32_t cp);
std::string utf8_lossy(std::string_view s);
// Unicode White_Space (Rust's char::is_whitespace).
bool is_white_space(uint32_t cp);

// The ByteLevel character (UTF-8) of byte b, and every byte of s so mapped.
const std::string& byte_level_char(unsigned char b);
std::string byte_level_encode(std::string_view s);
// The byte of one ByteLevel character, or -1 when c is not in the alphabet.
int byte_level_byte(std::string_view c);

}  // namespace graft::tok
