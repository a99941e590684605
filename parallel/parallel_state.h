// The process groups of a layout: tp, cp, dp and the combined groups built from them.
//
// With order tp-cp-dp (the default, tp fastest so tensor-parallel peers share a node):
//   world rank = tp_rank + tp * (cp_rank + cp * dp_rank)
// (order tp-dp-cp: world rank = tp_rank + tp * (dp_rank + dp * cp_rank)). Group ranks follow
// world ranks.
// Groups (each a ProcessGroup, size 1 = a local group):
//   tp      ranks differing only in tp_rank
//   cp      ranks differing only in cp_rank
//   dp      ranks differing only in dp_rank
//   dp_cp   ranks differing in dp_rank or cp_rank (gradients of replicated parameters under cp)
//   tp_cp   ranks differing in tp_rank or cp_rank (one model replica)
//   world   every rank (amax reduction, logging)
// A layer asks its BuildContext for these; nothing reads them from a global.
#pragma once

#include <memory>
#include <string>

#include "framework/core/device.h"
#include "parallel/layout.h"
#include "parallel/process_group.h"

namespace graft {

struct WorldInfo;

struct ParallelGroups {
  std::shared_ptr<ProcessGroup> world, tp, cp, dp, dp_cp, tp_cp;
  ParallelConfig layout;  // dp resolved (never 0 here)
  std::string backend;    // what `auto` resolved to: "local", "mpi", "mpi-staged", "nccl"
};

// Groups of size 1 for a single process (every layout dimension 1).
std::shared_ptr<const ParallelGroups> single_process_groups();

// Builds the groups of `layout` over the world for tensors on `device`. `file` names the recipe
// in errors. InputError (one line, naming the key, the world size and the product) when
// tp * cp * dp != world size, a size < 1, an unknown order or backend, or nccl asked for CPU
// tensors. Collective: every rank calls it with the same arguments. A world of one gets local
// groups (no MPI). Otherwise the backend is mpi for CPU tensors, nccl for CUDA tensors with
// backend auto or nccl, mpi-staged for CUDA tensors with backend mpi; it starts the Watchdog
// with layout.timeout_s.
std::shared_ptr<const ParallelGroups> make_parallel_groups(const ParallelConfig& layout,
                                                           const WorldInfo& world, Device device,
                                                           const std::string& file);

}  // namespace graft
