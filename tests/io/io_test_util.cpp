#include "tests/io/io_test_util.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/io/hf_checkpoint.h"
#include "tests/test_paths.h"

namespace graft::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/graft_io_test_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

std::string safetensors_bytes_with_length(uint64_t header_length, const std::string& rest) {
  std::string out(8, '\0');
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>((header_length >> (8 * b)) & 0xFF);
  return out + rest;
}

std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  return safetensors_bytes_with_length(header.size(), header + std::string(data_bytes, '\0'));
}

namespace {

// One F32 tensor entry.
std::string entry(const std::string& name, const std::string& shape, uint64_t begin, uint64_t end,
                  const std::string& dtype = "F32") {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

}  // namespace

std::vector<BadFile> bad_safetensors_files() {
  const std::string a16 = entry("a", "[4]", 0, 16);
  std::vector<BadFile> v = {
      {"empty_file", "", "too short for the 8-byte header length"},
      {"truncated_length_prefix", std::string("\x10\x00\x00", 3), "too short"},
      {"header_length_huge", safetensors_bytes_with_length(200'000'000, "{}"), "100 MB limit"},
      {"header_length_max_u64", safetensors_bytes_with_length(~uint64_t{0}, "{}"), "100 MB"},
      {"header_longer_than_file", safetensors_bytes_with_length(1000, "{\"a\":1}"),
       "header length 1000 exceeds the 7 bytes"},
      {"overlapping_offsets",
       safetensors_bytes("{" + a16 + "," + entry("b", "[4]", 8, 24) + "}", 24),
       "tensor \"b\": data_offsets [8, 24] overlap tensor \"a\""},
      {"gap_between_tensors",
       safetensors_bytes("{" + a16 + "," + entry("b", "[4]", 20, 36) + "}", 36),
       "tensor \"b\": data_offsets [20, 36] leave a gap"},
      {"first_not_at_zero", safetensors_bytes("{" + entry("a", "[4]", 4, 20) + "}", 20),
       "first tensor must begin at offset 0"},
      {"trailing_bytes", safetensors_bytes("{" + a16 + "}", 20), "4 trailing bytes"},
      {"data_truncated", safetensors_bytes("{" + a16 + "}", 8), "holds only 8 bytes"},
      {"unknown_dtype", safetensors_bytes("{" + entry("a", "[4]", 0, 16, "F33") + "}", 16),
       "tensor \"a\": unknown dtype \"F33\""},
      {"shape_size_mismatch", safetensors_bytes("{" + entry("a", "[2, 3]", 0, 16) + "}", 16),
       "tensor \"a\": data_offsets [0, 16] hold 16 bytes but F32 shape [2,3] needs 24"},
      {"duplicate_tensor_key", safetensors_bytes("{" + a16 + "," + a16 + "}", 16),
       "duplicate key \"a\""},
      {"duplicate_field_key",
       safetensors_bytes(
           "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
           16),
       "duplicate key \"dtype\" in \"a\""},
      {"non_utf8_name", safetensors_bytes("{" + entry("a\xff", "[4]", 0, 16) + "}", 16),
       "not valid UTF-8"},
      {"overlong_utf8_name", safetensors_bytes("{" + entry("a\xc0\xaf", "[4]", 0, 16) + "}", 16),
       "not valid UTF-8"},
      {"surrogate_utf8_name",
       safetensors_bytes("{" + entry("a\xed\xa0\x80", "[4]", 0, 16) + "}", 16), "not valid UTF-8"},
      {"metadata_value_not_string", safetensors_bytes("{\"__metadata__\":{\"k\":1}}", 0),
       "__metadata__ value of \"k\" must be a string"},
      {"metadata_not_object", safetensors_bytes("{\"__metadata__\":\"pt\"}", 0),
       "__metadata__ must be an object"},
      {"negative_shape", safetensors_bytes("{" + entry("a", "[-4]", 0, 16) + "}", 16),
       "shape entries must be non-negative integers, got -4"},
      {"float_shape", safetensors_bytes("{" + entry("a", "[4.0]", 0, 16) + "}", 16),
       "shape entries must be non-negative integers"},
      {"shape_overflow",
       safetensors_bytes("{" + entry("a", "[4294967296,4294967296,4]", 0, 16) + "}", 16),
       "tensor \"a\": size of shape [4294967296,4294967296,4] overflows 64 bits"},
      {"shape_bytes_overflow",
       safetensors_bytes("{" + entry("a", "[4611686018427387904]", 0, 16) + "}", 16),
       "overflows 64 bits"},
      {"offsets_reversed", safetensors_bytes("{" + entry("a", "[0]", 16, 0) + "}", 0),
       "end before they begin"},
      {"offsets_not_pair",
       safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", 16),
       "data_offsets must be two non-negative integers"},
      {"unknown_field",
       safetensors_bytes(
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", 16),
       "unknown field \"x\""},
      {"missing_shape",
       safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16),
       "missing field \"shape\""},
      {"entry_not_object", safetensors_bytes("{\"a\":5}", 0), "entry must be an object"},
      {"not_json", safetensors_bytes("{abc", 0), "not valid JSON"},
      {"trailing_garbage_after_json", safetensors_bytes("{} x", 0), "not valid JSON"},
      {"header_not_object", safetensors_bytes("[1, 2]", 0), "must be a JSON object"},
      {"deeply_nested", safetensors_bytes("{\"a\":{\"dtype\":[[[[[[1]]]]]]}}", 0),
       "nested deeper than 3 levels"},
      {"name_with_newline_escaped",
       safetensors_bytes("{" + entry("a\\nb", "[4]", 0, 16, "F33") + "}", 16),
       "tensor \"a\\nb\": unknown dtype"},
      {"name_with_raw_newline", safetensors_bytes("{" + entry("a\nb", "[4]", 0, 16) + "}", 16),
       "not valid JSON"},
  };
  return v;
}

std::vector<BadCheckpoint> bad_checkpoints() {
  // A good base: tensors a, b, c, d (F32 [4], 16 bytes each), two per shard.
  auto base = [](const std::string& dir) {
    std::vector<std::pair<std::string, Tensor>> t;
    for (const char* name : {"a", "b", "c", "d"}) t.emplace_back(name, Tensor::full({4}, 1.0f));
    write_hf_shards(dir, t, 32);
  };
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  auto with_index = [=](const std::string& weight_map_body) {
    return [=](const std::string& dir) {
      base(dir);
      write_bytes(
          dir + "/model.safetensors.index.json",
          "{\"metadata\": {\"total_size\": 64}, \"weight_map\": {" + weight_map_body + "}}");
    };
  };
  auto with_index_text = [=](const std::string& text) {
    return [=](const std::string& dir) {
      base(dir);
      write_bytes(dir + "/model.safetensors.index.json", text);
    };
  };
  auto kv = [](const std::string& k, const std::string& v) {
    return "\"" + k + "\": \"" + v + "\"";
  };
  const std::string b_c_d = kv("b", s1) + ", " + kv("c", s2) + ", " + kv("d", s2);
  return {
      {"index_parent_dir", with_index(kv("a", "../" + s1) + ", " + b_c_d),
       "weight_map[\"a\"] = \"../" + s1 + "\" is not a plain file name", true},
      {"index_subfolder", with_index(kv("a", "sub/" + s1) + ", " + b_c_d), "not a plain file name",
       true},
      {"index_dot_dot", with_index(kv("a", "..") + ", " + b_c_d), "not a plain file name", true},
      {"index_missing_shard",
       with_index(kv("a", "model-00009-of-00009.safetensors") + ", " + b_c_d),
       "shard \"model-00009-of-00009.safetensors\" (listed for tensor \"a\") is missing", true},
      {"index_tensor_listed_twice", with_index(kv("a", s1) + ", " + kv("a", s1) + ", " + b_c_d),
       "duplicate key \"a\"", true},
      {"index_unknown_key", with_index_text("{\"weight_map\": {}, \"x\": 1}"), "unknown key \"x\"",
       true},
      {"index_not_json", with_index_text("{\"weight_map\": "), "not valid JSON", true},
      {"index_weight_map_not_object", with_index_text("{\"weight_map\": [\"a\"]}"),
       "\"weight_map\" must be an object", true},
      {"index_empty_weight_map", with_index_text("{\"weight_map\": {}}"), "lists no tensors", true},
      {"no_weights", [](const std::string& dir) { write_bytes(dir + "/config.json", "{}"); },
       "no model.safetensors.index.json or model.safetensors", true},
      {"index_tensor_missing_from_shard",
       with_index(kv("z", s1) + ", " + kv("a", s1) + ", " + b_c_d),
       "lists tensor \"z\" in \"" + s1 + "\" but that shard does not hold it", false},
      {"shard_tensor_missing_from_index",
       with_index(kv("a", s1) + ", " + kv("c", s2) + ", " + kv("d", s2)),
       "holds tensor \"b\" which model.safetensors.index.json does not list", false},
      {"index_names_wrong_shard", with_index(kv("a", s2) + ", " + b_c_d),
       "holds tensor \"a\" which model.safetensors.index.json lists in \"" + s2 + "\"", false},
      {"shard_malformed",
       [=](const std::string& dir) {
         base(dir);
         write_bytes(dir + "/" + s2, safetensors_bytes("{\"c\":5}", 0));
       },
       "entry must be an object", false},
  };
}

std::string fixtures_dir() { return ::graft::test::source_root() + "/tests/fixtures/hf"; }

}  // namespace graft::testing
