// Groups of a single process (replaced by parallel_state.cpp when the MPI backends land).
#include "parallel/parallel_state.h"

namespace graft {

std::shared_ptr<const ParallelGroups> single_process_groups() {
  static const std::shared_ptr<const ParallelGroups> groups = [] {
    auto g = std::make_shared<ParallelGroups>();
    g->world = make_local_group("world");
    g->tp = make_local_group("tp");
    g->cp = make_local_group("cp");
    g->dp = make_local_group("dp");
    g->dp_cp = make_local_group("dp_cp");
    g->tp_cp = make_local_group("tp_cp");
    g->layout.dp = 1;
    g->backend = "local";
    return g;
  }();
  return groups;
}

}  // namespace graft

// ---- temporary stand-ins until the MPI backends land (world of one) ----
#include "parallel/launch.h"
#include "parallel/watchdog.h"

namespace graft {

const WorldInfo& world_info() {
  static WorldInfo w;
  return w;
}
const WorldInfo& init_world(int*, char***) { return world_info(); }
Device bind_local_device(Device requested, bool) { return requested; }
std::string rank_prefix() { return ""; }

std::shared_ptr<const ParallelGroups> make_parallel_groups(const ParallelConfig& layout,
                                                           const WorldInfo& world, Device,
                                                           const std::string& file) {
  const int64_t dp = layout.dp == 0 ? 1 : layout.dp;
  GRAFT_INPUT_CHECK(layout.tp * layout.cp * dp == world.size, file,
                    ": parallel.tp * cp * dp = ", layout.tp * layout.cp * dp, " but the world has ",
                    world.size, " rank(s)");
  auto g = std::make_shared<ParallelGroups>(*single_process_groups());
  g->layout = layout;
  g->layout.dp = 1;
  return g;
}

Watchdog& Watchdog::instance() {
  static Watchdog w;
  return w;
}
void Watchdog::start(double, int) {}
uint64_t Watchdog::begin(const char*, const std::string&, int, const std::string&) { return 0; }
void Watchdog::end(uint64_t) {}
void Watchdog::set_step(int64_t) {}

}  // namespace graft
