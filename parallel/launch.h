// Starting the ranks: MPI when launched by mpirun / srun, a world of one otherwise.
//
// init_world() calls MPI_Init_thread (MPI_THREAD_SERIALIZED is enough: only the main thread
// calls MPI; the watchdog thread never does) when the environment shows a launcher
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or SLURM_NTASKS > 1 with SLURM_PROCID), and returns
// a world of one without touching MPI otherwise, so a plain `graft train` needs no mpirun.
// The node-local rank comes from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) and is cross-checked
// against OMPI_COMM_WORLD_LOCAL_RANK / SLURM_LOCALID when those are set (a mismatch is an Error
// naming both values).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "framework/core/device.h"

namespace graft {

struct WorldInfo {
  int rank = 0, size = 1;              // in MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // on this node
  bool mpi = false;                    // MPI was initialised (by init_world)
};

// Idempotent; safe to call with null argc/argv. finalize_world() runs at exit when MPI was
// initialised here.
const WorldInfo& init_world(int* argc = nullptr, char*** argv = nullptr);
const WorldInfo& world_info();  // init_world() must have run (else a world of one)

// For a CUDA run: cudaSetDevice(local_rank) before any other CUDA or NCCL call. More local ranks
// than visible GPUs is an InputError naming both counts, unless `share_device` (the MPI-staged
// backend, where several ranks may use one GPU: then every rank uses device local_rank % count).
// Returns the device this rank computes on. CPU runs return the CPU.
Device bind_local_device(Device requested, bool share_device);

// "rank N: " when the world has more than one rank, "" otherwise (prefix for error lines).
std::string rank_prefix();

// Copies `bytes` at `data` from world rank `root` to every rank (MPI_Bcast over the world; a
// no-op in a world of one). Collective: how the NCCL backend shares its unique id without
// including MPI itself.
void world_broadcast(void* data, size_t bytes, int root);

// Runs `parse` — input checking that every rank does alike (loading the recipe) — and agrees on
// its InputError with rank 0, so a bad recipe under mpirun is one line for the job: the same
// error on every rank is rethrown as CollectiveInputError (rank 0 prints it); a rank whose own
// outcome differs from rank 0's (a file missing on one node) throws its own InputError, and a rank
// that succeeded where rank 0 failed throws rank 0's as CollectiveInputError (silent there).
// Collective: every rank of the world calls it once at the same point (one broadcast of rank 0's
// outcome; none in a world of one). Other exceptions pass through unchanged.
void parse_on_every_rank(const std::function<void()>& parse);

}  // namespace graft
