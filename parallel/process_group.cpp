#include "parallel/process_group.h"

#include "parallel/watchdog.h"

namespace graft {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kAvg:
      return "avg";
  }
  return "?";
}

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
};

// Size 1: the group's collectives are identities (all_reduce, broadcast) or copies.
class LocalGroup : public ProcessGroup {
 public:
  explicit LocalGroup(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  std::string backend() const override { return "local"; }
  const std::vector<int>& world_ranks() const override { return ranks_; }

  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp, bool) override {
    check_collective_args(*this, "all_reduce", t, nullptr, 1);
    check_reduce_dtype(*this, "all_reduce", t);
    return completed_work();
  }
  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out, bool) override {
    check_collective_args(*this, "all_gather", in, &out, 1);
    if (out.raw() != in.raw()) out.copy_from(in);
    return completed_work();
  }
  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp, bool) override {
    check_collective_args(*this, "reduce_scatter", out, &in, 1);
    check_reduce_dtype(*this, "reduce_scatter", in);
    if (out.raw() != in.raw()) out.copy_from(in);
    return completed_work();
  }
  void broadcast(Tensor& t, int root) override {
    GRAFT_CHECK(root == 0, "broadcast on group ", name_, " of size 1 from root ", root);
  }
  std::unique_ptr<Work> send_recv(const std::vector<P2POp>& ops, bool) override {
    // Size 1: a send to self pairs with a receive from self, in order.
    std::vector<const P2POp*> sends, recvs;
    for (const auto& op : ops) {
      GRAFT_CHECK(op.peer == 0, "send_recv on group ", name_, " of size 1 with peer ", op.peer);
      (op.kind == P2POp::Kind::kSend ? sends : recvs).push_back(&op);
    }
    GRAFT_CHECK(sends.size() == recvs.size(), "send_recv on group ", name_, ": ", sends.size(),
                " sends and ", recvs.size(), " receives to self");
    for (size_t i = 0; i < sends.size(); ++i) {
      Tensor dst = recvs[i]->tensor;
      dst.copy_from(sends[i]->tensor);
    }
    return completed_work();
  }
  void barrier() override {}
  double all_reduce_scalar(double v, ReduceOp) override { return v; }

 private:
  std::string name_;
  std::vector<int> ranks_{0};
};

}  // namespace

std::unique_ptr<Work> completed_work() { return std::make_unique<DoneWork>(); }

double ProcessGroup::all_reduce_scalar(double v, ReduceOp op) {
  Tensor t = Tensor::empty({1}, DType::kF64);
  t.data<double>()[0] = v;
  all_reduce(t, op)->wait();
  return t.data<double>()[0];
}

std::shared_ptr<ProcessGroup> make_local_group(const std::string& name) {
  return std::make_shared<LocalGroup>(name);
}

void check_collective_args(const ProcessGroup& g, const char* op, const Tensor& in,
                           const Tensor* out, int64_t out_factor) {
  GRAFT_CHECK(in.defined() && in.is_contiguous(), op, " on group ", g.name(),
              ": the tensor must be defined and contiguous, got ", in.str());
  if (!out) return;
  GRAFT_CHECK(out->defined() && out->is_contiguous(), op, " on group ", g.name(),
              ": the output must be defined and contiguous, got ", out->str());
  GRAFT_CHECK(out->dtype() == in.dtype() && out->device() == in.device(), op, " on group ",
              g.name(), ": input ", in.str(), " and output ", out->str(),
              " differ in dtype or device");
  const int64_t want = in.numel() * g.size() * out_factor;
  GRAFT_CHECK(out->numel() == want, op, " on group ", g.name(), " of ", g.size(),
              " ranks: output has ", out->numel(), " elements, expected ", want, " (input ",
              in.str(), ")");
}

bool supported_dtype(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF64:
    case DType::kBF16:
    case DType::kF16:
    case DType::kI32:
    case DType::kI64:
    case DType::kU8:
      return true;
    default:
      return false;
  }
}

void check_reduce_dtype(const ProcessGroup& g, const char* op, const Tensor& t) {
  GRAFT_CHECK(supported_dtype(t.dtype()), op, " on group ", g.name(), ": cannot reduce ", t.str(),
              " (reductions take f32, f64, bf16, f16, i32, i64, u8)");
}

}  // namespace graft
