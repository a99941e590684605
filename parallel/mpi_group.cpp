// The "mpi" ProcessGroup: CPU tensors over an MPI communicator, and CUDA tensors staged through
// pinned host buffers ("mpi-staged").
//
// CPU tensors: async = true issues the non-blocking MPI collectives and returns a Work whose
// wait() is MPI_Waitall (Open MPI progresses them inside MPI calls, so the overlap is what the
// library's progress engine gives). CUDA tensors: device -> pinned host copy (which waits for the
// caller's current stream), the MPI call, host -> device copy; always synchronous, even when
// async is asked (the returned Work is already complete). Every operation is registered with the
// Watchdog from issue until it completed (for async: until wait() returns).
#if GRAFT_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <cstring>

#include "framework/core/error.h"
#include "parallel/comm_backend.h"
#include "parallel/launch.h"
#include "parallel/mpi_ops.h"
#include "parallel/watchdog.h"

namespace graft {
namespace {

// A pinned host copy of a CUDA tensor (or uninitialised pinned space for an output).
Tensor pinned_like(const Tensor& t, bool copy_in) {
  DeviceBackend& be = device_backend();
  void* p = be.allocate_pinned(std::max<size_t>(t.nbytes(), 1));
  Tensor h = Tensor::from_blob(p, t.shape(), t.dtype(), Device::cpu(),
                               [p] { device_backend().release_pinned(p); });
  if (copy_in) be.copy(p, Device::cpu(), t.raw(), t.device(), t.nbytes());
  return h;
}

void copy_back(Tensor& dev, const Tensor& host) {
  device_backend().copy(dev.raw(), dev.device(), host.raw(), Device::cpu(), dev.nbytes());
}

class MpiWork : public Work {
 public:
  MpiWork(mpi::Pending pending, uint64_t watchdog_id)
      : pending_(std::move(pending)), id_(watchdog_id) {}
  ~MpiWork() override {
    if (done_) return;
    try {
      wait();  // dropping an unwaited Work must not leave MPI writing into freed buffers
    } catch (...) {
    }
  }
  void wait() override {
    if (done_) return;
    done_ = true;
    struct End {
      uint64_t id;
      ~End() { Watchdog::instance().end(id); }
    } end{id_};
    pending_.complete();
  }

 private:
  mpi::Pending pending_;
  uint64_t id_;
  bool done_ = false;
};

class MpiGroup : public ProcessGroup {
 public:
  MpiGroup(MPI_Comm comm, std::string name, std::vector<int> world_ranks, bool staged)
      : comm_(comm), name_(std::move(name)), ranks_(std::move(world_ranks)), staged_(staged) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    GRAFT_CHECK(static_cast<int>(ranks_.size()) == size_, "group ", name_, ": ", ranks_.size(),
                " world ranks listed for a communicator of ", size_);
    GRAFT_CHECK(ranks_[rank_] == world_info().rank, "group ", name_, ": group rank ", rank_,
                " listed as world rank ", ranks_[rank_], " on world rank ", world_info().rank);
  }
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  MPI_Comm comm() const { return comm_; }
  bool staged() const { return staged_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::string backend() const override { return staged_ ? "mpi-staged" : "mpi"; }
  const std::vector<int>& world_ranks() const override { return ranks_; }

  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op, bool async) override {
    check_collective_args(*this, "all_reduce", t, nullptr, 1);
    check_reduce_dtype(*this, "all_reduce", t);
    if (t.device().is_cuda()) {
      CollectiveScope scope("all_reduce", name_, size_, backend());
      Tensor h = pinned_like(t, true);
      run("all_reduce", false,
          [&](mpi::Pending& p) { p.all_reduce(h.raw(), h.numel(), h.dtype(), op, size_); });
      copy_back(t, h);
      return completed_work();
    }
    return run("all_reduce", async,
               [&](mpi::Pending& p) { p.all_reduce(t.raw(), t.numel(), t.dtype(), op, size_); });
  }

  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out, bool async) override {
    check_collective_args(*this, "all_gather", in, &out, 1);
    if (in.device().is_cuda()) {
      CollectiveScope scope("all_gather", name_, size_, backend());
      Tensor hin = pinned_like(in, true), hout = pinned_like(out, false);
      run("all_gather", false,
          [&](mpi::Pending& p) { p.all_gather(hin.raw(), hout.raw(), hin.nbytes(), size_); });
      copy_back(out, hout);
      return completed_work();
    }
    return run("all_gather", async, [&](mpi::Pending& p) {
      p.all_gather(in.raw(), out.raw(), static_cast<int64_t>(in.nbytes()), size_);
    });
  }

  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op,
                                       bool async) override {
    check_collective_args(*this, "reduce_scatter", out, &in, 1);
    check_reduce_dtype(*this, "reduce_scatter", in);
    if (in.device().is_cuda()) {
      CollectiveScope scope("reduce_scatter", name_, size_, backend());
      Tensor hin = pinned_like(in, true), hout = pinned_like(out, false);
      run("reduce_scatter", false, [&](mpi::Pending& p) {
        p.reduce_scatter(hin.raw(), hout.raw(), hout.numel(), hout.dtype(), op, size_);
      });
      copy_back(out, hout);
      return completed_work();
    }
    return run("reduce_scatter", async, [&](mpi::Pending& p) {
      p.reduce_scatter(in.raw(), out.raw(), out.numel(), out.dtype(), op, size_);
    });
  }

  void broadcast(Tensor& t, int root) override {
    check_collective_args(*this, "broadcast", t, nullptr, 1);
    GRAFT_CHECK(root >= 0 && root < size_, "broadcast on group ", name_, " of ", size_,
                " ranks from root ", root);
    CollectiveScope scope("broadcast", name_, size_, backend());
    if (t.device().is_cuda()) {
      Tensor h = pinned_like(t, rank_ == root);
      mpi::broadcast_bytes(comm_, h.raw(), static_cast<int64_t>(h.nbytes()), root);
      if (rank_ != root) copy_back(t, h);
      return;
    }
    mpi::broadcast_bytes(comm_, t.raw(), static_cast<int64_t>(t.nbytes()), root);
  }

  std::unique_ptr<Work> send_recv(const std::vector<P2POp>& ops, bool async) override {
    bool cuda = false;
    for (const auto& op : ops) {
      check_collective_args(*this, "send_recv", op.tensor, nullptr, 1);
      GRAFT_CHECK(op.peer >= 0 && op.peer < size_, "send_recv on group ", name_, " of ", size_,
                  " ranks with peer ", op.peer);
      cuda = cuda || op.tensor.device().is_cuda();
    }
    if (!cuda) {
      return run("send_recv", async, [&](mpi::Pending& p) {
        for (const auto& op : ops) {
          Tensor t = op.tensor;
          if (op.kind == P2POp::Kind::kSend) {
            p.send(t.raw(), static_cast<int64_t>(t.nbytes()), op.peer);
          } else {
            p.recv(t.raw(), static_cast<int64_t>(t.nbytes()), op.peer);
          }
        }
      });
    }
    CollectiveScope scope("send_recv", name_, size_, backend());
    std::vector<Tensor> host(ops.size());
    run("send_recv", false, [&](mpi::Pending& p) {
      for (size_t i = 0; i < ops.size(); ++i) {
        const bool send = ops[i].kind == P2POp::Kind::kSend;
        const Tensor& t = ops[i].tensor;
        host[i] = t.device().is_cuda() ? pinned_like(t, send) : t;
        const int64_t bytes = static_cast<int64_t>(t.nbytes());
        if (send) {
          p.send(host[i].raw(), bytes, ops[i].peer);
        } else {
          p.recv(host[i].raw(), bytes, ops[i].peer);
        }
      }
    });
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind == P2POp::Kind::kRecv && ops[i].tensor.device().is_cuda()) {
        Tensor dst = ops[i].tensor;
        copy_back(dst, host[i]);
      }
    }
    return completed_work();
  }

  void barrier() override {
    CollectiveScope scope("barrier", name_, size_, backend());
    const int rc = MPI_Barrier(comm_);
    GRAFT_CHECK(rc == MPI_SUCCESS, "MPI_Barrier on group ", name_, " failed with code ", rc);
  }

 private:
  // Issues through `issue` under a watchdog registration that lasts until completion (for
  // async: until the Work's wait()). The staged paths nest this inside their CollectiveScope,
  // which also covers the device copies.
  template <class F>
  std::unique_ptr<Work> run(const char* op, bool async, F&& issue) {
    const uint64_t id = Watchdog::instance().begin(op, name_, size_, backend());
    mpi::Pending pending(comm_, async);
    try {
      issue(pending);
    } catch (...) {
      Watchdog::instance().end(id);
      throw;
    }
    auto work = std::make_unique<MpiWork>(std::move(pending), id);
    if (!async) work->wait();
    return work;
  }

  MPI_Comm comm_;
  std::string name_;
  std::vector<int> ranks_;
  bool staged_;
  int rank_ = 0, size_ = 1;
};

class MpiBackend : public CommBackend {
 public:
  std::shared_ptr<ProcessGroup> make_world(const WorldInfo& world, Device device) override {
    GRAFT_CHECK(world.mpi, "an MPI world group needs init_world() under a launcher (world of ",
                world.size, " without MPI)");
    MPI_Comm comm;
    GRAFT_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm) == MPI_SUCCESS, "MPI_Comm_dup failed");
    std::vector<int> ranks(world.size);
    for (int r = 0; r < world.size; ++r) ranks[r] = r;
    return std::make_shared<MpiGroup>(comm, "world", std::move(ranks), device.is_cuda());
  }

  std::shared_ptr<ProcessGroup> split(ProcessGroup& parent, int color, int key,
                                      const std::string& name,
                                      std::vector<int> world_ranks) override {
    auto* p = dynamic_cast<MpiGroup*>(&parent);
    GRAFT_CHECK(p != nullptr, "MPI split of group ", parent.name(), " (backend ", parent.backend(),
                ")");
    MPI_Comm comm;
    CollectiveScope scope("MPI_Comm_split", parent.name(), parent.size(), parent.backend());
    GRAFT_CHECK(MPI_Comm_split(p->comm(), color, key, &comm) == MPI_SUCCESS,
                "MPI_Comm_split of group ", parent.name(), " for ", name, " failed");
    return std::make_shared<MpiGroup>(comm, name, std::move(world_ranks), p->staged());
  }
};

const bool registered = [] {
  register_comm_backend("mpi", new MpiBackend());
  return true;
}();

}  // namespace
}  // namespace graft
#endif  // GRAFT_HAVE_MPI
