// libFuzzer target for the safetensors parser.
//
// Input layout: 8 bytes little-endian `data_size` (taken modulo 1 MiB), then header JSON. Each
// input is parsed three ways:
//   1. the raw input as a whole file (exercises the length-prefix rules),
//   2. the JSON alone by parse_safetensors_header against `data_size` bytes of data,
//   3. a file assembled from the JSON and `data_size` zero bytes (the whole-file path that
//      SafetensorsFile::open takes), checking the invariants an accepted file must satisfy.
// Rejection must be a graft::InputError; anything else escaping (a json exception, a
// graft::Error, bad_alloc) or a sanitizer report is a finding.
#include <cstdint>
#include <cstring>
#include <string>

#include "framework/io/safetensors.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// An accepted layout tiles the data section exactly with correctly sized tensors.
void check_accepted(const graft::SafetensorsLayout& layout, uint64_t data_size) {
  uint64_t total = 0;
  for (const graft::TensorInfo& t : layout.tensors) {
    check(t.begin <= t.end && t.end <= data_size);
    check(t.end - t.begin ==
          static_cast<uint64_t>(graft::shape_numel(t.shape)) * graft::dtype_size(t.dtype));
    total += t.end - t.begin;
  }
  check(total == data_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    graft::parse_safetensors_buffer(data, size, "fuzz");
  } catch (const graft::InputError&) {
  }
  if (size < 8) return 0;
  uint64_t data_size = 0;
  for (int b = 7; b >= 0; --b) data_size = (data_size << 8) | data[b];
  data_size %= uint64_t{1} << 20;
  const char* json = reinterpret_cast<const char*>(data + 8);
  const size_t n = size - 8;

  bool header_ok = false;
  try {
    std::map<std::string, std::string> metadata;
    graft::parse_safetensors_header(json, n, data_size, "fuzz", &metadata);
    header_ok = true;
  } catch (const graft::InputError&) {
  }

  std::string file(8, '\0');
  for (int b = 0; b < 8; ++b) file[b] = static_cast<char>((uint64_t{n} >> (8 * b)) & 0xFF);
  file.append(json, n);
  file.append(data_size, '\0');
  bool file_ok = false;
  try {
    check_accepted(graft::parse_safetensors_buffer(file.data(), file.size(), "fuzz"), data_size);
    file_ok = true;
  } catch (const graft::InputError&) {
  }
  check(header_ok == file_ok);  // the two entry points agree
  return 0;
}
