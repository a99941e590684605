// HF loading and export under a tensor-parallel layout, with the tp layers, under mpirun:
// 2 ranks: tp2; 4 ranks: tp4 and tp2 × dp2 (KV heads replicated where tp exceeds them: Gemma MQA
// at tp2, every fixture at tp4). For every fixture in tests/fixtures/hf and both layer sets:
//   - each rank's loaded parameters are exactly its box of the single-process load (whole_box,
//     the rule the tp layers initialise by), vocabulary padding zero;
//   - each rank read fewer bytes than one process reads (it skipped the other ranks' slices);
//   - export under the layout writes the same files as the single process, byte for byte, in f32
//     and in bf16, in several shards.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "framework/model/shard_init.h"
#include "tests/model/test_util.h"
#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

struct Layout {
  int tp;
  std::string name() const { return str("tp", tp); }
};

std::vector<Layout> layouts() {
  const int w = world_info().size;
  if (w == 2) return {{2}};
  if (w == 4) return {{4}, {2}};
  return {};
}

std::shared_ptr<const ParallelGroups> groups_for(int tp) {
  static std::map<int, std::shared_ptr<const ParallelGroups>> cache;
  auto& g = cache[tp];
  if (!g) {
    ParallelConfig c;
    c.tp = tp;
    c.timeout_s = 120;
    g = make_parallel_groups(c, world_info(), Device::cpu(), "hf-layout-test");
  }
  return g;
}

// A folder every rank sees (rank 0 makes it), removed by rank 0 at scope end.
struct SharedDir {
  std::string path;
  SharedDir() {
    char buf[256] = {};
    if (world_info().rank == 0) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "graft_hfl_XXXXXX").string();
      std::snprintf(buf, sizeof(buf), "%s", mkdtemp(tmpl.data()));
    }
    world_broadcast(buf, sizeof(buf), 0);
    path = buf;
  }
  ~SharedDir() {
    mpi_test::cpu_groups().world->barrier();
    std::error_code ec;
    if (world_info().rank == 0) std::filesystem::remove_all(path, ec);
  }
};

std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    out[e.path().filename().string()] = ss.str();
  }
  return out;
}

struct Case {
  std::string fixture;
  bool te;
};

class HfLayout : public ::testing::TestWithParam<Case> {};

TEST_P(HfLayout, LoadsSlicesAndExportsTheSameFiles) {
  const auto& [fixture, te] = GetParam();
  if (layouts().empty()) GTEST_SKIP() << "runs at 2 or 4 ranks";
  const std::string dir = test::fixture_dir(fixture);
  const ModelConfig c = load_hf_config(dir + "/config.json");
  HfLoadStats whole_stats;
  auto whole = test::with_layers(te, c, [&] { return load_hf_model(dir, {}, &whole_stats); });
  for (const Layout& l : layouts()) {
    SCOPED_TRACE(l.name());
    HfLoadOptions opt;
    opt.groups = groups_for(l.tp);
    HfLoadStats s;
    auto m = test::with_layers(te, c, [&] { return load_hf_model(dir, opt, &s); });
    std::map<std::string, Parameter*> want;
    for (auto& [name, p] : whole->named_parameters()) want[name] = p;
    for (auto& [name, p] : m->named_parameters()) {
      const Parameter& w = *want.at(logical_param_name(name, p->spec));  // a part: a box of it
      const Tensor box = whole_box(w.value, w.spec, p->spec, p->value.shape(), name);
      EXPECT_TRUE(test::bit_equal(p->value, box)) << name << " " << p->spec.str();
    }
    EXPECT_LT(s.bytes_read, whole_stats.bytes_read) << "a tp rank skips the others' slices";
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(dtype_name(dtype));
      SharedDir out;
      const HfExportOptions eo{.max_shard_bytes = 16384, .dtype = dtype};
      export_hf_checkpoint(*m, out.path + "/layout", eo);
      if (world_info().rank == 0) {
        export_hf_checkpoint(*whole, out.path + "/one", eo);
        const auto a = files_of(out.path + "/layout"), b = files_of(out.path + "/one");
        ASSERT_GT(b.size(), 3u) << "several shards";
        ASSERT_EQ(a.size(), b.size());
        for (const auto& [file, bytes] : b) {
          ASSERT_TRUE(a.count(file)) << file;
          EXPECT_TRUE(a.at(file) == bytes) << file << " differs";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfLayout,
                         ::testing::Values(Case{"llama-gqa", false}, Case{"llama-gqa", true},
                                           Case{"gemma-mqa", false}, Case{"gemma-mqa", true},
                                           Case{"qwen3-qknorm", false}, Case{"qwen3-qknorm", true}),
                         [](const auto& info) {
                           std::string n = info.param.fixture + (info.param.te ? "_te" : "_ref");
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace graft
