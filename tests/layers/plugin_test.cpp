// The out-of-tree plugin (tests/plugins): loading it adds "example.scaled_decoder_layer" with the
// plugin path as its source; a layer built through an override is the plugin's and computes
// ½ · llama.decoder_layer; `graft layers --plugin PATH` lists it; bad paths are InputErrors.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/decoder.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

#ifndef GRAFT_EXAMPLE_PLUGIN
#error "tests/plugins/CMakeLists.txt defines GRAFT_EXAMPLE_PLUGIN"
#endif

std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return out;
  std::array<char, 512> buf;
  while (fgets(buf.data(), buf.size(), f)) out += buf.data();
  *status = pclose(f);
  return out;
}

TEST(Plugin, LoadsRegistersAndBuildsThroughOverride) {
  load_plugin(test::example_plugin());
  load_plugin(test::example_plugin());  // a second load is a no-op, not a duplicate error
  const RegistryEntry* e = Registry::global().find("example.scaled_decoder_layer");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->source, test::example_plugin());
  EXPECT_EQ(e->kind, "decoder_layer");

  DecoderConfig c;
  c.hidden_size = 8;
  c.ffn_hidden_size = 12;
  c.num_attention_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  auto ref = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                    local_context(c));
  std::unique_ptr<DecoderLayer> plug;
  {
    OverrideScope s({{"llama.decoder_layer", "example.scaled_decoder_layer"}});
    plug = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                  local_context(c));
  }
  EXPECT_EQ(plug->type(), "example.scaled_decoder_layer");
  std::mt19937 rng(5);
  test::randomize(*ref, rng);
  test::import_hf(*plug, plug->hf_weight_map(), test::export_hf(*ref, ref->hf_weight_map()));
  AttentionInputs in;
  in.batch = 1;
  in.seq = 3;
  in.positions = Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {1, 3});
  Tensor x = test::randn({1, 3, 8}, rng);
  Tensor yr = ref->forward(x, in, nullptr), yp = plug->forward(x, in, nullptr);
  auto a = yr.to_f32_vector(), b = yp.to_f32_vector();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(b[i], 0.5f * a[i]);
}

TEST(Plugin, GraftLayersListsPluginEntriesWithSource) {
  int status = -1;
  std::string out =
      run(test::graft_binary() + " layers --plugin " + test::example_plugin(), &status);
  EXPECT_EQ(status, 0) << out;
  const size_t at = out.find("example.scaled_decoder_layer");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_NE(line.find(test::example_plugin()), std::string::npos) << line;
  EXPECT_NE(out.find("te.transformer_layer"), std::string::npos) << out;
  EXPECT_NE(out.find("builtin"), std::string::npos) << out;
  // Without the plugin the entry is absent.
  out = run(test::graft_binary() + " layers", &status);
  EXPECT_EQ(out.find("example.scaled_decoder_layer"), std::string::npos) << out;
}

TEST(Plugin, BadPathsAreInputErrors) {
  EXPECT_THROW(load_plugin("/nonexistent/plugin.so"), InputError);
  // A file that exists but is no shared library.
  EXPECT_THROW(load_plugin(::graft::test::source_root() + "/tests/plugins/CMakeLists.txt"),
               InputError);
  int status = -1;
  std::string out = run(test::graft_binary() + " layers --plugin /nonexistent/plugin.so", &status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << out;
  EXPECT_NE(out.find("/nonexistent/plugin.so"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

}  // namespace
}  // namespace graft
