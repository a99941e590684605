// safetensors reader and writer: round trips of every dtype, the writer's layout, and one
// crafted bad file per validation rule.
#include "framework/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "tests/io/io_test_util.h"

namespace graft {
namespace {

using testing::BadFile;
using testing::TempDir;

const DType kAllDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2,
                            DType::kF64, DType::kI8,  DType::kI16,  DType::kI32,    DType::kI64,
                            DType::kU8,  DType::kU16, DType::kU32,  DType::kU64,    DType::kBool};

// A tensor whose bytes are a position-dependent pattern (every byte value occurs, so a swapped,
// shifted or truncated copy shows), with bool bytes kept 0/1.
Tensor patterned(const Shape& shape, DType dtype, int seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) {
    p[i] = static_cast<unsigned char>((i * 37 + seed * 11 + 5) & 0xFF);
    if (dtype == DType::kBool) p[i] &= 1;
  }
  return t;
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw()), c.nbytes());
}

TEST(Safetensors, RoundTripsEveryDtype) {
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> tensors;
  int seed = 0;
  for (DType dt : kAllDTypes) {
    tensors.emplace_back(std::string("t_") + dtype_name(dt), patterned({3, 5, 7}, dt, seed++));
  }
  tensors.emplace_back("scalar", patterned({}, DType::kF32, 99));
  tensors.emplace_back("empty", patterned({0, 4}, DType::kBF16, 98));
  const std::string path = dir.file("all.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "\"quoted\"\nline"}});

  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), tensors.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "\"quoted\"\nline");
  for (const auto& [name, want] : tensors) {
    SCOPED_TRACE(name);
    const TensorInfo* info = f->find(name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, want.dtype());
    EXPECT_EQ(info->shape, want.shape());
    Tensor got = f->tensor(name);
    EXPECT_EQ(got.shape(), want.shape());
    EXPECT_EQ(got.dtype(), want.dtype());
    EXPECT_EQ(bytes_of(got), bytes_of(want));
  }
  EXPECT_EQ(f->find("missing"), nullptr);
  EXPECT_THROW(f->tensor("missing"), SafetensorsError);
}

TEST(Safetensors, WritesStridedTensorsContiguous) {
  TempDir dir;
  Tensor m = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  write_safetensors(dir.file("t.safetensors"),
                    {{"mt", m.transpose(0, 1)}, {"col", m.slice(1, 1, 1)}});
  auto f = SafetensorsFile::open(dir.file("t.safetensors"));
  EXPECT_EQ(f->tensor("mt").shape(), (Shape{3, 2}));
  EXPECT_EQ(f->tensor("mt").to_f32_vector(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(f->tensor("col").to_f32_vector(), (std::vector<float>{1, 4}));
}

// The layout of the reference writer: header padded with spaces to a multiple of 8, tensors by
// element size (largest first) then name, so each is aligned to its element size.
TEST(Safetensors, WriterLayoutMatchesReferenceWriter) {
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  write_safetensors(path, {{"z_u8", patterned({3}, DType::kU8, 1)},
                           {"b_f32", patterned({2}, DType::kF32, 2)},
                           {"a_f32", patterned({1}, DType::kF32, 3)},
                           {"c_f64", patterned({1}, DType::kF64, 4)}});
  const std::string raw = testing::read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = raw.substr(8, n);
  // Exact header text: what the format specifies, in the reference writer's order.
  const std::string expect =
      "{\"c_f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"a_f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
      "\"b_f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
      "\"z_u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[20,23]}}";
  EXPECT_EQ(header.substr(0, expect.size()), expect);
  EXPECT_EQ(header.substr(expect.size()), std::string(n - expect.size(), ' '));
  EXPECT_EQ(raw.size(), 8 + n + 23);
  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->tensors()[0].name, "c_f64");  // header order is kept
  EXPECT_EQ(f->tensors()[3].name, "z_u8");
}

TEST(Safetensors, WriteIsAtomicAndLeavesNoTemporaryFiles) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path, {{"a", Tensor::full({4}, 1.0f)}});
  auto old = SafetensorsFile::open(path);
  Tensor old_view = old->tensor("a");
  write_safetensors(path, {{"a", Tensor::full({4}, 2.0f)}});  // replace while mapped
  EXPECT_EQ(old_view.to_f32_vector(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(SafetensorsFile::open(path)->tensor("a").to_f32_vector(),
            (std::vector<float>{2, 2, 2, 2}));
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_THROW(write_safetensors(dir.file("no/such/folder/x.safetensors"), {}), InputError);
}

TEST(Safetensors, ViewOutlivesFileObject) {
  TempDir dir;
  write_safetensors(dir.file("v.safetensors"), {{"a", Tensor::full({3}, 7.0f)}});
  Tensor view = SafetensorsFile::open(dir.file("v.safetensors"))->tensor("a");
  EXPECT_EQ(view.to_f32_vector(), (std::vector<float>{7, 7, 7}));
}

TEST(Safetensors, AcceptsUnpaddedHeaderAndCopiesMisalignedTensors) {
  TempDir dir;
  // Header of 59 bytes: the F32 data starts at file offset 67, not a multiple of 4.
  const std::string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  float values[2] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char*>(values), 8);
  testing::write_bytes(dir.file("u.safetensors"),
                       testing::safetensors_bytes_with_length(header.size(), header + data));
  auto f = SafetensorsFile::open(dir.file("u.safetensors"));
  EXPECT_EQ(f->tensor("a").to_f32_vector(), (std::vector<float>{1.5f, -2.25f}));
}

TEST(Safetensors, AcceptsEmptyHeaderAndZeroSizedTensors) {
  TempDir dir;
  testing::write_bytes(dir.file("e.safetensors"), testing::safetensors_bytes("{}", 0));
  EXPECT_TRUE(SafetensorsFile::open(dir.file("e.safetensors"))->tensors().empty());
  // Zero-sized tensors share offsets with their neighbours.
  const std::string h =
      "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"y\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[8,8]}}   ";
  testing::write_bytes(dir.file("z.safetensors"), testing::safetensors_bytes(h, 8));
  auto f = SafetensorsFile::open(dir.file("z.safetensors"));
  EXPECT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensor("y").numel(), 0);
}

TEST(Safetensors, RejectsWhatIsNotARegularFile) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile::open(dir.file("missing.safetensors")), SafetensorsError);
  EXPECT_THROW(SafetensorsFile::open(dir.path()), SafetensorsError);
}

class BadSafetensors : public ::testing::TestWithParam<BadFile> {};

TEST_P(BadSafetensors, IsRejectedNamingFileTensorAndRule) {
  const BadFile& bad = GetParam();
  TempDir dir;
  const std::string path = dir.file(bad.label + ".safetensors");
  testing::write_bytes(path, bad.bytes);
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted " << bad.label;
  } catch (const SafetensorsError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(bad.expect), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // The in-memory entry point (used by the fuzzer) applies the same rules.
  EXPECT_THROW(parse_safetensors_buffer(bad.bytes.data(), bad.bytes.size(), "mem"),
               SafetensorsError);
}

INSTANTIATE_TEST_SUITE_P(Rules, BadSafetensors,
                         ::testing::ValuesIn(testing::bad_safetensors_files()),
                         [](const auto& info) { return info.param.label; });

}  // namespace
}  // namespace graft
