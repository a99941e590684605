#if GRAFT_HAVE_MPI
#include "parallel/mpi_ops.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "framework/core/error.h"

namespace graft::mpi {
namespace {

constexpr int kTag = 7;

MPI_Datatype native_type(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kU8:
      return MPI_UINT8_T;
    default:
      GRAFT_CHECK(false, "no native MPI reduction type for ", dtype_name(t));
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op native_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

bool via_f32(DType t) { return t == DType::kBF16 || t == DType::kF16; }

// bf16 / f16 <-> f32 scratch (convert_elements' generic path goes through f64 per element).
void widen(const void* src, DType t, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  if (t == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
  }
}
void narrow(const float* src, DType t, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  if (t == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
  }
}

template <class T>
void divide_as(void* data, int64_t n, int group_size) {
  T* p = static_cast<T*>(data);
  const T d = static_cast<T>(group_size);
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] / d;
}

// Elements (or bytes) per call such that count * group_size stays within max_count().
int64_t chunk_for(int group_size) { return std::max<int64_t>(1, max_count() / group_size); }

}  // namespace

int64_t max_count() {
  static const int64_t n = [] {
    const char* v = std::getenv("GRAFT_MPI_MAX_COUNT");  // tests: exercise the chunked paths
    const long long x = v ? std::atoll(v) : 0;
    return x > 0 ? static_cast<int64_t>(x) : static_cast<int64_t>(INT_MAX);
  }();
  return n;
}

void divide_elements(void* data, int64_t n, DType dtype, int group_size) {
  switch (dtype) {
    case DType::kF32:
      return divide_as<float>(data, n, group_size);
    case DType::kF64:
      return divide_as<double>(data, n, group_size);
    case DType::kI32:
      return divide_as<int32_t>(data, n, group_size);
    case DType::kI64:
      return divide_as<int64_t>(data, n, group_size);
    case DType::kU8:
      return divide_as<uint8_t>(data, n, group_size);
    default:
      GRAFT_CHECK(false, "divide_elements of ", dtype_name(dtype));
  }
}

MPI_Request* Pending::next_request() {
  if (!async_) return nullptr;
  requests_.push_back(MPI_REQUEST_NULL);
  return &requests_.back();
}

void Pending::check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  GRAFT_CHECK(false, call, " failed: ", std::string(msg, len));
}

void* Pending::scratch(size_t bytes) {
  scratch_.push_back(std::make_unique<uint8_t[]>(std::max<size_t>(bytes, 1)));
  return scratch_.back().get();
}

void Pending::all_reduce_native(void* data, int64_t n, MPI_Datatype type, MPI_Op op) {
  int size = 0;
  MPI_Type_size(type, &size);
  auto* p = static_cast<uint8_t*>(data);
  const int64_t chunk = max_count();
  for (int64_t off = 0; off < n; off += chunk) {
    const int c = static_cast<int>(std::min(chunk, n - off));
    void* buf = p + off * size;
    if (MPI_Request* r = next_request()) {
      check(MPI_Iallreduce(MPI_IN_PLACE, buf, c, type, op, comm_, r), "MPI_Iallreduce");
    } else {
      check(MPI_Allreduce(MPI_IN_PLACE, buf, c, type, op, comm_), "MPI_Allreduce");
    }
  }
}

void Pending::all_reduce(void* data, int64_t n, DType dtype, ReduceOp op, int group_size) {
  if (n == 0) return;
  void* buf = data;
  DType work = dtype;
  if (via_f32(dtype)) {
    buf = scratch(static_cast<size_t>(n) * sizeof(float));
    widen(data, dtype, static_cast<float*>(buf), n);
    work = DType::kF32;
  }
  all_reduce_native(buf, n, native_type(work), native_op(op));
  if (op == ReduceOp::kAvg) {
    finish_.push_back([=] { divide_elements(buf, n, work, group_size); });
  }
  if (buf != data) {
    finish_.push_back([=] { narrow(static_cast<const float*>(buf), dtype, data, n); });
  }
}

void Pending::all_gather(const void* in, void* out, int64_t bytes, int group_size) {
  if (bytes == 0) return;
  const auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  int me = 0;
  MPI_Comm_rank(comm_, &me);
  const bool in_place = src == dst + me * bytes;
  const int64_t chunk = chunk_for(group_size);
  if (bytes <= chunk) {
    const void* send = in_place ? MPI_IN_PLACE : in;
    const int c = static_cast<int>(bytes);
    if (MPI_Request* r = next_request()) {
      check(MPI_Iallgather(send, c, MPI_BYTE, out, c, MPI_BYTE, comm_, r), "MPI_Iallgather");
    } else {
      check(MPI_Allgather(send, c, MPI_BYTE, out, c, MPI_BYTE, comm_), "MPI_Allgather");
    }
    return;
  }
  // Chunked: gather piece [off, off + c) of every rank into packed scratch, then unpack.
  for (int64_t off = 0; off < bytes; off += chunk) {
    const int64_t c = std::min(chunk, bytes - off);
    auto* packed = static_cast<uint8_t*>(scratch(static_cast<size_t>(c * group_size)));
    const int ci = static_cast<int>(c);
    if (MPI_Request* r = next_request()) {
      check(MPI_Iallgather(src + off, ci, MPI_BYTE, packed, ci, MPI_BYTE, comm_, r),
            "MPI_Iallgather");
    } else {
      check(MPI_Allgather(src + off, ci, MPI_BYTE, packed, ci, MPI_BYTE, comm_), "MPI_Allgather");
    }
    finish_.push_back([=] {
      for (int rk = 0; rk < group_size; ++rk) {
        std::memcpy(dst + rk * bytes + off, packed + rk * c, static_cast<size_t>(c));
      }
    });
  }
}

void Pending::reduce_scatter_native(const void* in, void* out, int64_t n, DType dtype, MPI_Op op,
                                    int group_size) {
  const size_t es = dtype_size(dtype);
  const MPI_Datatype type = native_type(dtype);
  const auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  const int64_t chunk = chunk_for(group_size);
  // MPI forbids the output inside the input (a shard of the bucket it reduces): send a copy.
  const uint8_t* out_end = dst + n * es;
  const uint8_t* in_end = src + n * group_size * es;
  if (dst < in_end && src < out_end && n <= chunk) {
    auto* copy = static_cast<uint8_t*>(scratch(n * group_size * es));
    std::memcpy(copy, src, n * group_size * es);
    src = copy;
  }
  if (n <= chunk) {
    const int c = static_cast<int>(n);
    if (MPI_Request* r = next_request()) {
      check(MPI_Ireduce_scatter_block(src, dst, c, type, op, comm_, r),
            "MPI_Ireduce_scatter_block");
    } else {
      check(MPI_Reduce_scatter_block(src, dst, c, type, op, comm_), "MPI_Reduce_scatter_block");
    }
    return;
  }
  // Chunked: pack piece [off, off + c) of every rank's block, reduce-scatter the packed buffer.
  // Packing copies the input, so the output may overlap it here.
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t c = std::min(chunk, n - off);
    auto* packed = static_cast<uint8_t*>(scratch(c * group_size * es));
    for (int rk = 0; rk < group_size; ++rk) {
      std::memcpy(packed + rk * c * es, src + (rk * n + off) * es, c * es);
    }
    auto* piece = static_cast<uint8_t*>(scratch(c * es));
    const int ci = static_cast<int>(c);
    if (MPI_Request* r = next_request()) {
      check(MPI_Ireduce_scatter_block(packed, piece, ci, type, op, comm_, r),
            "MPI_Ireduce_scatter_block");
    } else {
      check(MPI_Reduce_scatter_block(packed, piece, ci, type, op, comm_),
            "MPI_Reduce_scatter_block");
    }
    finish_.push_back([=] { std::memcpy(dst + off * es, piece, c * es); });
  }
}

void Pending::reduce_scatter(const void* in, void* out, int64_t n, DType dtype, ReduceOp op,
                             int group_size) {
  if (n == 0) return;
  const void* src = in;
  void* dst = out;
  DType work = dtype;
  if (via_f32(dtype)) {
    const size_t total = static_cast<size_t>(n) * group_size;
    void* in32 = scratch(total * sizeof(float));
    widen(in, dtype, static_cast<float*>(in32), static_cast<int64_t>(total));
    src = in32;
    dst = scratch(static_cast<size_t>(n) * sizeof(float));
    work = DType::kF32;
  }
  reduce_scatter_native(src, dst, n, work, native_op(op), group_size);
  if (op == ReduceOp::kAvg) {
    finish_.push_back([=] { divide_elements(dst, n, work, group_size); });
  }
  if (dst != out) {
    finish_.push_back([=] { narrow(static_cast<const float*>(dst), dtype, out, n); });
  }
}

void Pending::send(const void* data, int64_t bytes, int peer) {
  const auto* p = static_cast<const uint8_t*>(data);
  const int64_t chunk = max_count();
  // Chunks of one message match in order (MPI never overtakes on one comm, peer and tag).
  for (int64_t off = 0; off < bytes || off == 0; off += chunk) {
    const int c = static_cast<int>(std::min(chunk, bytes - off));
    requests_.push_back(MPI_REQUEST_NULL);  // always non-blocking: the batch runs together
    check(MPI_Isend(p + off, c, MPI_BYTE, peer, kTag, comm_, &requests_.back()), "MPI_Isend");
    if (bytes == 0) break;
  }
}

void Pending::recv(void* data, int64_t bytes, int peer) {
  auto* p = static_cast<uint8_t*>(data);
  const int64_t chunk = max_count();
  for (int64_t off = 0; off < bytes || off == 0; off += chunk) {
    const int c = static_cast<int>(std::min(chunk, bytes - off));
    requests_.push_back(MPI_REQUEST_NULL);
    check(MPI_Irecv(p + off, c, MPI_BYTE, peer, kTag, comm_, &requests_.back()), "MPI_Irecv");
    if (bytes == 0) break;
  }
}

void Pending::complete() {
  if (!requests_.empty()) {
    check(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE),
          "MPI_Waitall");
    requests_.clear();
  }
  for (auto& f : finish_) f();
  finish_.clear();
  scratch_.clear();
}

void broadcast_bytes(MPI_Comm comm, void* data, int64_t bytes, int root) {
  auto* p = static_cast<uint8_t*>(data);
  const int64_t chunk = max_count();
  for (int64_t off = 0; off < bytes; off += chunk) {
    const int c = static_cast<int>(std::min(chunk, bytes - off));
    const int rc = MPI_Bcast(p + off, c, MPI_BYTE, root, comm);
    GRAFT_CHECK(rc == MPI_SUCCESS, "MPI_Bcast of ", c, " bytes failed with code ", rc);
  }
}

}  // namespace graft::mpi
#endif  // GRAFT_HAVE_MPI
