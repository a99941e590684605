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
