// Strict JSON for checkpoint files: valid UTF-8 only, duplicate object keys rejected at any depth
// (nlohmann::json would silently keep one of them), nesting bounded, key order preserved.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace graft::io {

// Returns the byte offset of the first byte that is not part of a well-formed UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are ill-formed), or nullopt.
std::optional<size_t> find_invalid_utf8(const char* s, size_t n);

// Parses `n` bytes as one JSON document (trailing whitespace allowed) into `out`. Returns an
// error description (one line, at most ~200 characters, no file name) or nullopt on success.
std::optional<std::string> parse_strict_json(const char* s, size_t n, int max_depth,
                                             nlohmann::ordered_json* out);

// Reads a JSON file of at most `max_bytes` with parse_strict_json. Throws InputError naming the
// file (missing, not a regular file, too large, malformed).
nlohmann::ordered_json read_json_file(const std::string& path, size_t max_bytes, int max_depth);

// `s` as a JSON string literal for error messages: quoted, control characters escaped (a name
// with a newline still prints on one line), cut after 200 bytes with "...".
std::string quoted(const std::string& s);

}  // namespace graft::io
