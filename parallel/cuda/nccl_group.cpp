// The "nccl" ProcessGroup: CUDA tensors over a non-blocking NCCL communicator, on the group's
// own communication stream.
//
// Stream order, not host waits: an operation records an event on the caller's current stream,
// makes the communication stream wait for it, enqueues the NCCL call there and records `done`.
// Work::wait() makes the caller's current stream (at the time of wait) wait for `done`; the host
// never blocks. async = false does that wait before returning, so it too only orders streams:
// read the result on the host through a copy (which synchronises) or a synchronize().
// all_reduce_scalar and barrier do block the host (they exist to deliver host values / sync).
//
// Memory: the caching allocator is stream-ordered per stream, and the tensors given to NCCL were
// allocated on the compute stream but are used on the communication stream. The Work keeps a
// reference to them until wait(), and wait() orders the compute stream after the collective, so
// a block released after wait() and handed out again on the compute stream is only touched
// after NCCL is done with it. Call wait() (or let the Work go out of scope, which waits) with
// the allocating stream current, before dropping the last reference to those tensors.
#include <nccl.h>

#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/stream.h"
#include "framework/core/error.h"
#include "parallel/comm_backend.h"
#include "parallel/cuda/nccl_comm.h"
#include "parallel/launch.h"
#include "parallel/watchdog.h"

namespace graft {
namespace {

// ncclUint8 moves any other dtype as bytes.
ncclDataType_t nccl_type(DType t, bool* exact = nullptr) {
  bool ok = true;
  ncclDataType_t r = ncclUint8;
  switch (t) {
    case DType::kF32:
      r = ncclFloat32;
      break;
    case DType::kF64:
      r = ncclFloat64;
      break;
    case DType::kBF16:
      r = ncclBfloat16;
      break;
    case DType::kF16:
      r = ncclFloat16;
      break;
    case DType::kI32:
      r = ncclInt32;
      break;
    case DType::kI64:
      r = ncclInt64;
      break;
    case DType::kU8:
      r = ncclUint8;
      break;
    default:
      ok = false;
  }
  if (exact) *exact = ok;
  return r;
}

// (type, count) for moving `t`: its own type, or bytes.
std::pair<ncclDataType_t, size_t> movement(const Tensor& t) {
  bool exact = false;
  const ncclDataType_t type = nccl_type(t.dtype(), &exact);
  return exact ? std::pair{type, static_cast<size_t>(t.numel())} : std::pair{ncclUint8, t.nbytes()};
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kAvg:
      return ncclAvg;
  }
  return ncclSum;
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<nccl::Event> done, int device, std::vector<Tensor> keep)
      : done_(std::move(done)), device_(device), keep_(std::move(keep)) {}
  ~NcclWork() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (!done_) return;
    cuda::DeviceGuard g(device_);
    GRAFT_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(device_), done_->get(), 0));
    done_.reset();
    keep_.clear();
  }

 private:
  std::shared_ptr<nccl::Event> done_;
  int device_;
  std::vector<Tensor> keep_;
};

class NcclGroup : public ProcessGroup {
 public:
  NcclGroup(ncclComm_t comm, int device, std::string name, std::vector<int> world_ranks)
      : name_(std::move(name)), ranks_(std::move(world_ranks)) {
    GRAFT_CHECK(ncclCommUserRank(comm, &rank_) == ncclSuccess, "ncclCommUserRank");
    GRAFT_CHECK(ncclCommCount(comm, &size_) == ncclSuccess, "ncclCommCount");
    GRAFT_CHECK(static_cast<int>(ranks_.size()) == size_, "group ", name_, ": ", ranks_.size(),
                " world ranks listed for an NCCL communicator of ", size_);
    comm_ = std::make_unique<nccl::Comm>(comm, device, name_, size_);
  }

  nccl::Comm& comm() { return *comm_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string backend() const override { return "nccl"; }
  const std::vector<int>& world_ranks() const override { return ranks_; }

  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op, bool async) override {
    check_collective_args(*this, "all_reduce", t, nullptr, 1);
    check_reduce_dtype(*this, "all_reduce", t);
    check_device(t);
    return enqueue("ncclAllReduce", async, {t}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllReduce(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), nccl_op(op), c, s);
    });
  }

  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out, bool async) override {
    check_collective_args(*this, "all_gather", in, &out, 1);
    check_device(in);
    const auto [type, count] = movement(in);
    return enqueue("ncclAllGather", async, {in, out}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllGather(in.raw(), out.raw(), count, type, c, s);
    });
  }

  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op,
                                       bool async) override {
    check_collective_args(*this, "reduce_scatter", out, &in, 1);
    check_reduce_dtype(*this, "reduce_scatter", in);
    check_device(in);
    return enqueue("ncclReduceScatter", async, {in, out}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclReduceScatter(in.raw(), out.raw(), out.numel(), nccl_type(out.dtype()),
                               nccl_op(op), c, s);
    });
  }

  void broadcast(Tensor& t, int root) override {
    check_collective_args(*this, "broadcast", t, nullptr, 1);
    check_device(t);
    GRAFT_CHECK(root >= 0 && root < size_, "broadcast on group ", name_, " of ", size_,
                " ranks from root ", root);
    const auto [type, count] = movement(t);
    enqueue("ncclBroadcast", false, {t}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclBroadcast(t.raw(), t.raw(), count, type, root, c, s);
    });
  }

  std::unique_ptr<Work> send_recv(const std::vector<P2POp>& ops, bool async) override {
    std::vector<Tensor> keep;
    for (const auto& op : ops) {
      check_collective_args(*this, "send_recv", op.tensor, nullptr, 1);
      check_device(op.tensor);
      GRAFT_CHECK(op.peer >= 0 && op.peer < size_, "send_recv on group ", name_, " of ", size_,
                  " ranks with peer ", op.peer);
      keep.push_back(op.tensor);
    }
    return enqueue("ncclSend/ncclRecv", async, std::move(keep), [&](ncclComm_t c, cudaStream_t s) {
      ncclResult_t r = ncclGroupStart();
      for (size_t i = 0; i < ops.size() && r == ncclSuccess; ++i) {
        Tensor t = ops[i].tensor;
        const auto [type, count] = movement(t);
        r = ops[i].kind == P2POp::Kind::kSend ? ncclSend(t.raw(), count, type, ops[i].peer, c, s)
                                              : ncclRecv(t.raw(), count, type, ops[i].peer, c, s);
      }
      const ncclResult_t end = ncclGroupEnd();
      return r == ncclSuccess ? end : r;
    });
  }

  void barrier() override {
    Tensor one = Tensor::empty({1}, DType::kF32, Device::cuda(comm_->device()));
    device_backend().memset_zero(one.raw(), one.nbytes(), one.device());
    all_reduce(one, ReduceOp::kSum, false);
    host_wait("barrier");
  }

  double all_reduce_scalar(double v, ReduceOp op) override {
    const Device dev = Device::cuda(comm_->device());
    Tensor t = Tensor::empty({1}, DType::kF64, dev);
    device_backend().copy(t.raw(), dev, &v, Device::cpu(), sizeof v);
    all_reduce(t, op, false);
    host_wait("all_reduce_scalar");
    double r = 0;
    device_backend().copy(&r, Device::cpu(), t.raw(), dev, sizeof r);
    return r;
  }

 private:
  void check_device(const Tensor& t) const {
    GRAFT_CHECK(t.device() == Device::cuda(comm_->device()), "group ", name_,
                " (nccl) communicates on cuda:", comm_->device(), ", got ", t.str());
  }

  // Event chain: caller's stream -> communication stream -> `done` (see the file comment).
  template <class F>
  std::unique_ptr<Work> enqueue(const char* op, bool async, std::vector<Tensor> keep, F&& call) {
    const int dev = comm_->device();
    cuda::DeviceGuard g(dev);
    nccl::Event ready;
    GRAFT_CUDA_CHECK(cudaEventRecord(ready.get(), cuda::current_stream(dev)));
    GRAFT_CUDA_CHECK(cudaStreamWaitEvent(comm_->stream(), ready.get(), 0));
    Watchdog& wd = Watchdog::instance();
    const uint64_t id = wd.begin(op, name_, size_, "nccl");
    const ncclResult_t r = comm_->settle(call(comm_->get(), comm_->stream()));
    if (r != ncclSuccess) {
      wd.end(id);
      GRAFT_CHECK(false, comm_->describe_error(op, r));
    }
    auto done = std::make_shared<nccl::Event>();
    GRAFT_CUDA_CHECK(cudaEventRecord(done->get(), comm_->stream()));
    comm_->add_pending(done, id);
    auto work = std::make_unique<NcclWork>(std::move(done), dev, std::move(keep));
    if (async) return work;
    work->wait();
    return completed_work();
  }

  // Blocks the host until the communication stream is idle, watched like a collective.
  void host_wait(const char* op) {
    CollectiveScope scope(op, name_, size_, "nccl");
    cuda::DeviceGuard g(comm_->device());
    GRAFT_CUDA_CHECK(cudaStreamSynchronize(comm_->stream()));
  }

  std::string name_;
  std::vector<int> ranks_;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<nccl::Comm> comm_;
};

class NcclBackend : public CommBackend {
 public:
  std::shared_ptr<ProcessGroup> make_world(const WorldInfo& world, Device device) override {
    GRAFT_CHECK(device.is_cuda(), "an NCCL group for ", device.str());
    ncclUniqueId id{};
    if (world.rank == 0) {
      const ncclResult_t r = ncclGetUniqueId(&id);
      GRAFT_CHECK(r == ncclSuccess, "ncclGetUniqueId failed: ", ncclGetErrorString(r));
    }
    world_broadcast(&id, sizeof id, 0);
    cuda::DeviceGuard g(device.index);
    ncclComm_t comm = nullptr;
    ncclConfig_t config = nonblocking_config();
    {
      CollectiveScope scope("ncclCommInitRankConfig", "world", world.size, "nccl");
      nccl::settle_new(comm, ncclCommInitRankConfig(&comm, world.size, id, world.rank, &config),
                       "ncclCommInitRankConfig", "world");
    }
    std::vector<int> ranks(world.size);
    for (int r = 0; r < world.size; ++r) ranks[r] = r;
    return std::make_shared<NcclGroup>(comm, device.index, "world", std::move(ranks));
  }

  std::shared_ptr<ProcessGroup> split(ProcessGroup& parent, int color, int key,
                                      const std::string& name,
                                      std::vector<int> world_ranks) override {
    auto* p = dynamic_cast<NcclGroup*>(&parent);
    GRAFT_CHECK(p != nullptr, "NCCL split of group ", parent.name(), " (backend ", parent.backend(),
                ")");
    cuda::DeviceGuard g(p->comm().device());
    ncclComm_t comm = nullptr;
    ncclConfig_t config = nonblocking_config();
    {
      CollectiveScope scope("ncclCommSplit", parent.name(), parent.size(), "nccl");
      const ncclResult_t r = ncclCommSplit(p->comm().get(), color, key, &comm, &config);
      GRAFT_CHECK(p->comm().settle(r) == ncclSuccess, p->comm().describe_error("ncclCommSplit", r));
      nccl::settle_new(comm, ncclInProgress, "ncclCommSplit", name);
    }
    return std::make_shared<NcclGroup>(comm, p->comm().device(), name, std::move(world_ranks));
  }
};

const bool registered = [] {
  register_comm_backend("nccl", new NcclBackend());
  return true;
}();

}  // namespace
}  // namespace graft
