// Communication backends that build process groups over the world: "mpi" (parallel/mpi_group.cpp,
// built when MPI is found) and "nccl" (parallel/cuda/nccl_group.cpp, built with CUDA and NCCL).
// Each registers itself at static-initialisation time, the way the CUDA DeviceBackend does, so
// make_parallel_groups needs neither MPI nor NCCL headers and a CPU-only build has no NCCL.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "parallel/process_group.h"

namespace graft {

struct WorldInfo;

class CommBackend {
 public:
  virtual ~CommBackend() = default;
  // The group of every rank, named "world", for tensors on `device`. Collective over the world.
  virtual std::shared_ptr<ProcessGroup> make_world(const WorldInfo& world, Device device) = 0;
  // A sub-group of `parent` (a group this backend made): the ranks passing the same `color`,
  // ordered by `key`. `world_ranks` are the members in that order (this rank among them).
  // Collective over `parent`: every rank of it calls split once, with its own colour.
  virtual std::shared_ptr<ProcessGroup> split(ProcessGroup& parent, int color, int key,
                                              const std::string& name,
                                              std::vector<int> world_ranks) = 0;
};

// `backend` is never freed (it outlives static groups). Registering a name twice is an Error.
void register_comm_backend(const std::string& name, CommBackend* backend);
// Null when that backend was not built.
CommBackend* find_comm_backend(const std::string& name);

}  // namespace graft
