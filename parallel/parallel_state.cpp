// make_parallel_groups: validate a layout against the world, then build its groups (see
// parallel_state.h). A rank's coordinates are its world rank read in mixed radix, the fastest
// dimension first as the order names them. The group of a set of dimensions holds the ranks that
// agree on every other coordinate: that agreement is the MPI / NCCL split colour, and the world
// rank is the key (so group ranks follow world ranks, and a tp group's rank is the tp rank).
#include "parallel/parallel_state.h"

#include <array>

#include "framework/core/error.h"
#include "parallel/comm_backend.h"
#include "parallel/launch.h"
#include "parallel/watchdog.h"

namespace graft {
namespace {

enum Dim { kTp = 0, kCp = 1, kDp = 2 };

struct Order {
  const char* name;
  std::array<Dim, 3> fastest_first;
};
constexpr Order kOrders[] = {{"tp-cp-dp", {kTp, kCp, kDp}}, {"tp-dp-cp", {kTp, kDp, kCp}}};

const Order* find_order(const std::string& s) {
  for (const Order& o : kOrders) {
    if (s == o.name) return &o;
  }
  return nullptr;
}

// The validated layout, dp resolved.
ParallelConfig validate(const ParallelConfig& in, int world, Device device,
                        const std::string& file) {
  ParallelConfig c = in;
  GRAFT_INPUT_CHECK(c.tp >= 1, file, ": parallel.tp = ", c.tp, ", expected >= 1");
  GRAFT_INPUT_CHECK(c.cp >= 1, file, ": parallel.cp = ", c.cp, ", expected >= 1");
  GRAFT_INPUT_CHECK(c.dp >= 0, file, ": parallel.dp = ", c.dp,
                    ", expected >= 1 (or 0: world size / (tp * cp))");
  GRAFT_INPUT_CHECK(c.pp == 1, file, ": parallel.pp = ", c.pp,
                    ": pipeline parallelism is not supported, expected 1");
  GRAFT_INPUT_CHECK(find_order(c.order), file, ": parallel.order = '", c.order,
                    "', expected tp-cp-dp or tp-dp-cp");
  GRAFT_INPUT_CHECK(c.backend == "auto" || c.backend == "nccl" || c.backend == "mpi", file,
                    ": parallel.backend = '", c.backend, "', expected auto, nccl or mpi");
  GRAFT_INPUT_CHECK(!(c.backend == "nccl" && device.is_cpu()), file,
                    ": parallel.backend = nccl needs CUDA tensors, but the device is ",
                    device.str(), " (use mpi or auto)");
  GRAFT_INPUT_CHECK(c.timeout_s > 0, file, ": parallel.timeout_s = ", c.timeout_s,
                    ", expected > 0");
  GRAFT_INPUT_CHECK(c.zero == 0 || c.zero == 1, file, ": parallel.zero = ", c.zero,
                    ", expected 0 or 1 (distributed optimizer over dp)");
  GRAFT_INPUT_CHECK(c.bucket_mb > 0, file, ": parallel.bucket_mb = ", c.bucket_mb,
                    ", expected > 0");
  const int64_t tp_cp = c.tp * c.cp;
  if (c.dp == 0) {
    GRAFT_INPUT_CHECK(world % tp_cp == 0, file, ": parallel.dp = 0 (infer) needs the world size ",
                      world, " to be divisible by parallel.tp * parallel.cp = ", c.tp, " * ", c.cp,
                      " = ", tp_cp);
    c.dp = world / tp_cp;
  }
  const int64_t product = tp_cp * c.dp;
  GRAFT_INPUT_CHECK(product == world, file, ": parallel.tp * parallel.cp * parallel.dp = ", c.tp,
                    " * ", c.cp, " * ", c.dp, " = ", product, " does not equal the world size ",
                    world);
  return c;
}

struct Coords {
  std::array<int64_t, 3> size, at;  // indexed by Dim
  const Order* order;

  int64_t rank_of(const std::array<int64_t, 3>& x) const {
    int64_t r = 0;
    for (int i = 2; i >= 0; --i) r = r * size[order->fastest_first[i]] + x[order->fastest_first[i]];
    return r;
  }
  std::array<int64_t, 3> coords_of(int64_t r) const {
    std::array<int64_t, 3> x{};
    for (Dim d : order->fastest_first) {
      x[d] = r % size[d];
      r /= size[d];
    }
    return x;
  }
};

struct GroupSpec {
  const char* name;
  std::array<bool, 3> spans;  // which dimensions vary inside the group (by Dim)
  std::shared_ptr<ProcessGroup> ParallelGroups::*slot;
};
constexpr GroupSpec kGroups[] = {
    {"tp", {true, false, false}, &ParallelGroups::tp},
    {"cp", {false, true, false}, &ParallelGroups::cp},
    {"dp", {false, false, true}, &ParallelGroups::dp},
    {"dp_cp", {false, true, true}, &ParallelGroups::dp_cp},
    {"tp_cp", {true, true, false}, &ParallelGroups::tp_cp},
};

}  // namespace

std::shared_ptr<const ParallelGroups> single_process_groups() {
  static const std::shared_ptr<const ParallelGroups> g = [] {
    auto p = std::make_shared<ParallelGroups>();
    p->world = make_local_group("world");
    p->tp = make_local_group("tp");
    p->cp = make_local_group("cp");
    p->dp = make_local_group("dp");
    p->dp_cp = make_local_group("dp_cp");
    p->tp_cp = make_local_group("tp_cp");
    p->layout.dp = 1;
    p->backend = "local";
    return std::shared_ptr<const ParallelGroups>(p);
  }();
  return g;
}

std::shared_ptr<const ParallelGroups> make_parallel_groups(const ParallelConfig& layout,
                                                           const WorldInfo& world, Device device,
                                                           const std::string& file) {
  const ParallelConfig c = validate(layout, world.size, device, file);
  auto groups = std::make_shared<ParallelGroups>(*single_process_groups());
  groups->layout = c;
  if (world.size == 1) return groups;
  const bool nccl = device.is_cuda() && c.backend != "mpi";
  const std::string backend_name = nccl ? "nccl" : "mpi";
  CommBackend* backend = find_comm_backend(backend_name);
  GRAFT_INPUT_CHECK(backend, file, ": parallel.backend = ", c.backend, " needs the ", backend_name,
                    " backend, but graft was built without ",
                    nccl ? "NCCL (use parallel.backend = mpi)" : "MPI");
  Watchdog::instance().start(c.timeout_s, world.rank);

  Coords co{{c.tp, c.cp, c.dp}, {}, find_order(c.order)};
  co.at = co.coords_of(world.rank);
  auto world_group = backend->make_world(world, device);
  groups->backend = world_group->backend();
  for (const GroupSpec& spec : kGroups) {
    // Colour: my rank with the spanned coordinates zeroed. Members: every rank that agrees.
    std::array<int64_t, 3> base = co.at;
    int64_t size = 1;
    for (int d = 0; d < 3; ++d) {
      if (spec.spans[d]) {
        base[d] = 0;
        size *= co.size[d];
      }
    }
    std::shared_ptr<ProcessGroup> g;
    if (size == 1) {
      g = make_local_group(spec.name);
    } else {
      std::vector<int> members;
      for (int64_t r = 0; r < world.size; ++r) {
        std::array<int64_t, 3> x = co.coords_of(r);
        bool same = true;
        for (int d = 0; d < 3; ++d) same = same && (spec.spans[d] || x[d] == co.at[d]);
        if (same) members.push_back(static_cast<int>(r));
      }
      GRAFT_CHECK(static_cast<int64_t>(members.size()) == size, "group ", spec.name, " has ",
                  members.size(), " members, expected ", size);
      g = backend->split(*world_group, static_cast<int>(co.rank_of(base)), world.rank, spec.name,
                         std::move(members));
    }
    (*groups).*spec.slot = std::move(g);
  }
  groups->world = std::move(world_group);
  return groups;
}

}  // namespace graft
