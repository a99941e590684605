// Tensors: an owning, reference-counted storage plus a view (shape, strides in elements,
// element offset, dtype, device). Views share storage; `from_blob` makes a non-owning view of
// memory someone else owns (a memory-mapped checkpoint, a caller's buffer).
//
// Accessors check what they can: data<T>() checks the dtype matches T and the device is the CPU
// (use raw() for device pointers).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace graft {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Storage {
 public:
  Storage(size_t bytes, Device device);                                               // owning
  Storage(void* ptr, size_t bytes, Device device, std::function<void()> on_release);  // borrowed
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  bool owning_ = true;
  std::function<void()> on_release_;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kF64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kI64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kU8;
}

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, DType dtype = DType::kF32);  // CPU
  // Non-owning view; `keep_alive` (optional) runs when the last view is gone.
  static Tensor from_blob(void* ptr, const Shape& shape, DType dtype, Device device = Device::cpu(),
                          std::function<void()> keep_alive = nullptr);
  // CPU tensor holding a copy of `values`.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int dim) const;  // negative dims count from the end
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  std::string str() const;  // "bf16[4, 64] cpu"

  void* raw();
  const void* raw() const;
  template <class T>
  T* data() {
    check_access(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <class T>
  const T* data() const {
    check_access(dtype_of<T>());
    return static_cast<const T*>(raw());
  }

  // Views (share storage).
  Tensor view(const Shape& shape) const;  // contiguous only; one dim may be -1
  Tensor slice(int dim, int64_t start, int64_t length) const;
  Tensor select(int dim, int64_t index) const;  // drops the dim
  Tensor transpose(int a, int b) const;

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;  // CPU only
  // Copies `src` into this tensor's elements (same shape; any dtype, device, strides).
  void copy_from(const Tensor& src);
  void zero_();
  void fill_(float value);  // CPU float tensors

  // Element access for tests and small host code (CPU, any float/int dtype, any strides).
  double item(std::initializer_list<int64_t> index) const;
  std::vector<float> to_f32_vector() const;

 private:
  void check_access(DType want) const;
  int64_t element_offset(std::initializer_list<int64_t> index) const;

  std::shared_ptr<Storage> storage_;
  Shape shape_, strides_;
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::kF32;
};

Shape contiguous_strides(const Shape& shape);

}  // namespace graft
