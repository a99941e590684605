#include "framework/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace graft {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    GRAFT_CHECK(d >= 0, "negative dimension in ", shape_str(s));
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device.is_cpu()) {
    size_t rounded = (bytes + 63) / 64 * 64;
    ptr_ = std::aligned_alloc(64, rounded);
    GRAFT_CHECK(ptr_ != nullptr, "host allocation of ", bytes, " bytes failed");
  } else {
    ptr_ = device_backend().allocate(bytes, device);
  }
}

Storage::Storage(void* ptr, size_t bytes, Device device, std::function<void()> on_release)
    : ptr_(ptr),
      bytes_(bytes),
      device_(device),
      owning_(false),
      on_release_(std::move(on_release)) {}

Storage::~Storage() {
  if (!owning_) {
    if (on_release_) on_release_();
    return;
  }
  if (!ptr_) return;
  if (device_.is_cpu()) {
    std::free(ptr_);
  } else {
    device_backend().release(ptr_, bytes_, device_);
  }
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(
      static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_blob(void* ptr, const Shape& shape, DType dtype, Device device,
                         std::function<void()> keep_alive) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ =
      std::make_shared<Storage>(ptr, static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
                                device, std::move(keep_alive));
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  GRAFT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
              "from_vector: ", values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::kF32);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_vector(const std::vector<int64_t>& values, const Shape& shape) {
  GRAFT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
              "from_vector: ", values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::kI64);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

int64_t Tensor::size(int dim) const {
  if (dim < 0) dim += ndim();
  GRAFT_CHECK(dim >= 0 && dim < ndim(), "dim ", dim, " out of range for ", str());
  return shape_[dim];
}

// Row-major with no gaps; the stride of a dimension of size 1 never matters (a [1, 1, H] slice of
// a [B, S, H] tensor is contiguous whatever its outer strides say).
bool Tensor::is_contiguous() const {
  if (numel() <= 1) return true;
  int64_t want = 1;
  for (int d = ndim() - 1; d >= 0; --d) {
    if (shape_[d] == 1) continue;
    if (strides_[d] != want) return false;
    want *= shape_[d];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "<undefined tensor>";
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_str(shape_) << " " << device().str();
  return os.str();
}

void* Tensor::raw() {
  GRAFT_CHECK(defined(), "access to an undefined tensor");
  return static_cast<uint8_t*>(storage_->data()) + offset_ * dtype_size(dtype_);
}

const void* Tensor::raw() const { return const_cast<Tensor*>(this)->raw(); }

void Tensor::check_access(DType want) const {
  GRAFT_CHECK(defined(), "access to an undefined tensor");
  GRAFT_CHECK(dtype_ == want, "tensor ", str(), " accessed as ", dtype_name(want));
  GRAFT_CHECK(device().is_cpu(), "host access to device tensor ", str());
}

Tensor Tensor::view(const Shape& shape) const {
  GRAFT_CHECK(is_contiguous(), "view of non-contiguous tensor ", str());
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      GRAFT_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    GRAFT_CHECK(known > 0 && numel() % known == 0, "view ", shape_str(shape), " of ", str());
    s[infer] = numel() / known;
  }
  GRAFT_CHECK(shape_numel(s) == numel(), "view ", shape_str(shape), " of ", str());
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t length) const {
  if (dim < 0) dim += ndim();
  GRAFT_CHECK(dim >= 0 && dim < ndim(), "slice dim ", dim, " of ", str());
  GRAFT_CHECK(start >= 0 && length >= 0 && start + length <= shape_[dim], "slice [", start, ", ",
              start + length, ") of dim ", dim, " of ", str());
  Tensor t = *this;
  t.offset_ += start * strides_[dim];
  t.shape_[dim] = length;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  if (dim < 0) dim += ndim();
  Tensor t = slice(dim, index, 1);
  t.shape_.erase(t.shape_.begin() + dim);
  t.strides_.erase(t.strides_.begin() + dim);
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  if (a < 0) a += ndim();
  if (b < 0) b += ndim();
  GRAFT_CHECK(a >= 0 && a < ndim() && b >= 0 && b < ndim(), "transpose ", a, ",", b, " of ", str());
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor t = empty(shape_, dtype_, device);
  if (nbytes() == 0) return t;
  device_backend().copy(t.raw(), device, src.raw(), src.device(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  GRAFT_CHECK(device().is_cpu(), "dtype conversion of device tensor ", str(),
              " (use a device kernel)");
  Tensor src = contiguous();
  Tensor t = empty(shape_, dtype);
  convert_elements(src.raw(), dtype_, t.raw(), dtype, static_cast<size_t>(numel()));
  return t;
}

namespace {
// Calls fn(dst_elem_offset, src_elem_offset) for every element, row-major over `shape`.
template <class Fn>
void for_each_index(const Shape& shape, const Shape& a_strides, const Shape& b_strides, Fn fn) {
  const int nd = static_cast<int>(shape.size());
  if (shape_numel(shape) == 0) return;
  std::vector<int64_t> idx(nd, 0);
  int64_t a = 0, b = 0;
  while (true) {
    fn(a, b);
    int d = nd - 1;
    for (; d >= 0; --d) {
      ++idx[d];
      a += a_strides[d];
      b += b_strides[d];
      if (idx[d] < shape[d]) break;
      a -= a_strides[d] * shape[d];
      b -= b_strides[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  GRAFT_CHECK(shape_ == src.shape_, "copy_from: shape ", shape_str(src.shape_), " into ", str());
  if (numel() == 0) return;
  if (!device().is_cpu() || !src.device().is_cpu()) {
    GRAFT_CHECK(dtype_ == src.dtype_ && is_contiguous(),
                "device copy needs equal dtypes and a contiguous destination: ", src.str(), " -> ",
                str());
    Tensor s = src.device().is_cpu() ? src.contiguous() : src;
    GRAFT_CHECK(s.is_contiguous(), "device copy from non-contiguous device tensor ", src.str());
    device_backend().copy(raw(), device(), s.raw(), s.device(), nbytes());
    return;
  }
  if (is_contiguous() && src.is_contiguous()) {
    convert_elements(src.raw(), src.dtype_, raw(), dtype_, static_cast<size_t>(numel()));
    return;
  }
  const size_t ds = dtype_size(dtype_), ss = dtype_size(src.dtype_);
  auto* d = static_cast<uint8_t*>(raw());
  const auto* s = static_cast<const uint8_t*>(src.raw());
  for_each_index(shape_, strides_, src.strides_, [&](int64_t a, int64_t b) {
    convert_elements(s + b * ss, src.dtype_, d + a * ds, dtype_, 1);
  });
}

void Tensor::zero_() {
  GRAFT_CHECK(is_contiguous(), "zero_ of non-contiguous ", str());
  if (nbytes() == 0) return;
  if (device().is_cpu()) {
    std::memset(raw(), 0, nbytes());
  } else {
    device_backend().memset_zero(raw(), nbytes(), device());
  }
}

void Tensor::fill_(float value) {
  GRAFT_CHECK(device().is_cpu() && is_contiguous(), "fill_ of ", str());
  Tensor one = Tensor::from_vector(std::vector<float>{value}, {1});
  const size_t es = dtype_size(dtype_);
  uint8_t pattern[8];
  convert_elements(one.raw(), DType::kF32, pattern, dtype_, 1);
  auto* d = static_cast<uint8_t*>(raw());
  for (int64_t i = 0; i < numel(); ++i) std::memcpy(d + i * es, pattern, es);
}

int64_t Tensor::element_offset(std::initializer_list<int64_t> index) const {
  GRAFT_CHECK(static_cast<int>(index.size()) == ndim(), "index rank ", index.size(), " for ",
              str());
  int64_t off = 0;
  int d = 0;
  for (int64_t i : index) {
    GRAFT_CHECK(i >= 0 && i < shape_[d], "index ", i, " out of range in dim ", d, " of ", str());
    off += i * strides_[d++];
  }
  return off;
}

double Tensor::item(std::initializer_list<int64_t> index) const {
  GRAFT_CHECK(device().is_cpu(), "item() of device tensor ", str());
  double v;
  const auto* p = static_cast<const uint8_t*>(raw()) + element_offset(index) * dtype_size(dtype_);
  convert_elements(p, dtype_, &v, DType::kF64, 1);
  return v;
}

std::vector<float> Tensor::to_f32_vector() const {
  Tensor t = device().is_cpu() ? *this : to(Device::cpu());
  Tensor c = Tensor::empty(shape_, DType::kF32);
  c.copy_from(t);
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

}  // namespace graft
