// init_world / bind_local_device: see launch.h.
#include "parallel/launch.h"

#include <cstdlib>
#include <mutex>
#include <optional>

#include "framework/core/error.h"
#include "parallel/watchdog.h"

#if GRAFT_HAVE_MPI
#include <mpi.h>
#endif

namespace graft {
namespace {

WorldInfo& world_slot() {
  static WorldInfo info;
  return info;
}

std::optional<long> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0') return std::nullopt;
  return x;
}

// The launcher's world size when the environment shows one, else nothing.
std::optional<long> launcher_world_size() {
  if (auto n = env_int("OMPI_COMM_WORLD_SIZE")) return n;
  if (auto n = env_int("PMI_SIZE")) return n;
  if (std::getenv("PMIX_RANK")) return env_int("PMIX_SIZE").value_or(0);  // 0: ask MPI
  if (auto n = env_int("SLURM_NTASKS"); n && *n > 1 && std::getenv("SLURM_PROCID")) return n;
  return std::nullopt;
}

#if GRAFT_HAVE_MPI
bool g_finalize_at_exit = false;

void finalize_world() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // MPI_Finalize synchronises with the peers: a dead peer would hang it, so it is watched too.
  CollectiveScope scope("MPI_Finalize", "world", world_slot().size, "mpi");
  MPI_Finalize();
}

void init_mpi(int* argc, char*** argv, WorldInfo& w) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    GRAFT_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed with code ", rc);
    GRAFT_CHECK(provided >= MPI_THREAD_SERIALIZED, "MPI_Init_thread provided thread level ",
                provided, ", graft needs MPI_THREAD_SERIALIZED (", MPI_THREAD_SERIALIZED, ")");
    g_finalize_at_exit = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &w.local_rank);
  MPI_Comm_size(local, &w.local_size);
  MPI_Comm_free(&local);
  w.mpi = true;
  // The launcher's idea of the local rank must agree (it is how GPUs get assigned elsewhere).
  // SLURM_LOCALID is trusted only when Slurm also started this MPI rank (not mpirun in sbatch).
  std::optional<long> env_local = env_int("OMPI_COMM_WORLD_LOCAL_RANK");
  const char* env_name = "OMPI_COMM_WORLD_LOCAL_RANK";
  if (!env_local && env_int("SLURM_PROCID") == std::optional<long>(w.rank)) {
    env_local = env_int("SLURM_LOCALID");
    env_name = "SLURM_LOCALID";
  }
  GRAFT_CHECK(!env_local || *env_local == w.local_rank, "rank ", w.rank,
              ": MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) gives local rank ", w.local_rank,
              " but ", env_name, " = ", *env_local);
  if (g_finalize_at_exit) std::atexit(finalize_world);
}
#endif

}  // namespace

const WorldInfo& init_world(int* argc, char*** argv) {
  static std::once_flag once;
  std::call_once(once, [&] {
    WorldInfo& w = world_slot();
    const std::optional<long> launched = launcher_world_size();
    if (!launched) return;
#if GRAFT_HAVE_MPI
    init_mpi(argc, argv, w);
    GRAFT_CHECK(*launched == 0 || *launched == w.size, "the launcher's environment says ",
                *launched, " ranks but MPI_COMM_WORLD has ", w.size);
#else
    GRAFT_INPUT_CHECK(*launched <= 1, "started by a launcher with ", *launched,
                      " ranks, but graft was built without MPI");
#endif
  });
  return world_slot();
}

const WorldInfo& world_info() { return world_slot(); }

Device bind_local_device(Device requested, bool share_device) {
  if (requested.is_cpu()) return requested;
  const WorldInfo& w = world_info();
  DeviceBackend& backend = device_backend();
  const int count = backend.device_count();
  Device chosen = requested;
  if (w.local_size > 1) {
    GRAFT_INPUT_CHECK(requested.index == 0, "device ", requested.str(), " requested with ",
                      w.local_size,
                      " ranks on this node: each rank takes the GPU of its local rank; request "
                      "device cuda");
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    GRAFT_INPUT_CHECK(share_device || w.local_size <= count, w.local_size,
                      " ranks on this node but only ", count,
                      " GPUs visible (CUDA_VISIBLE_DEVICES=", visible ? visible : "<unset>", ")");
    chosen = Device::cuda(w.local_rank % count);
  }
  backend.set_device(chosen.index);
  return chosen;
}

std::string rank_prefix() {
  const WorldInfo& w = world_info();
  return w.size > 1 ? str("rank ", w.rank, ": ") : std::string();
}

void world_broadcast(void* data, size_t bytes, int root) {
  const WorldInfo& w = world_info();
  if (w.size == 1) return;
#if GRAFT_HAVE_MPI
  GRAFT_CHECK(bytes <= static_cast<size_t>(INT32_MAX), "world_broadcast of ", bytes, " bytes");
  CollectiveScope scope("broadcast", "world", w.size, "mpi");
  const int rc = MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD);
  GRAFT_CHECK(rc == MPI_SUCCESS, "MPI_Bcast of ", bytes, " bytes failed with code ", rc);
#else
  GRAFT_CHECK(false, "world_broadcast in a world of ", w.size, " without MPI");
#endif
}

void parse_on_every_rank(const std::function<void()>& parse) {
  const WorldInfo& w = world_info();
  if (w.size == 1) {
    parse();
    return;
  }
  bool failed = false;
  std::string mine;
  try {
    parse();
  } catch (const InputError& e) {
    failed = true;
    mine = e.what();
  }
  // Rank 0's outcome: 0 = success, else 1 + the length of its message, then the message.
  uint64_t len = w.rank == 0 && failed ? mine.size() + 1 : 0;
  world_broadcast(&len, sizeof len, 0);
  std::string root = w.rank == 0 ? mine : std::string(len > 0 ? len - 1 : 0, '\0');
  if (len > 1) world_broadcast(root.data(), len - 1, 0);
  if (failed && len > 0 && mine == root) throw CollectiveInputError(mine);
  if (failed) throw InputError(mine);
  if (len > 0) throw CollectiveInputError(root);
}

}  // namespace graft
