// Helpers shared by the model tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "tests/test_paths.h"

namespace graft::test {

inline std::string fixture_dir(const std::string& name) {
  return ::graft::test::source_root() + "/tests/fixtures/hf/" + name;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

// Runs fn, expects an InputError whose message contains every one of `parts`; returns it.
inline std::string expect_input_error(const std::function<void()>& fn,
                                      const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no InputError thrown";
  return "";
}

}  // namespace graft::test

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <utility>

#include "framework/io/hf_checkpoint.h"
#include "framework/model/architecture.h"
#include "framework/registry/registry.h"

namespace graft::test {

// A fresh folder under /tmp, removed with its contents at scope end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "graft_model_XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string sub(const std::string& name) const { return path + "/" + name; }
};

// Builds the model, with the TE decoder layer in place of the config's when `te`.
template <class Fn>
auto with_layers(bool te, const ModelConfig& c, Fn&& fn) {
  std::unique_ptr<OverrideScope> scope;
  if (te)
    scope = std::make_unique<OverrideScope>(std::vector<std::pair<std::string, std::string>>{
        {c.decoder_layer, "te.transformer_layer"}});
  return fn();
}

inline ModelConfig tiny_config(const std::string& arch) {
  return parse_hf_config(find_architecture(arch, "tiny")->tiny_config(), arch + "/config.json");
}

inline std::unique_ptr<CausalLM> tiny_model(const std::string& arch, bool te, uint64_t seed) {
  ModelConfig c = tiny_config(arch);
  auto m = with_layers(te, c, [&] { return build_model(c); });
  m->init_weights(seed);
  return m;
}

// Every tensor of a checkpoint folder, copied to memory, in shard order.
inline std::vector<std::pair<std::string, Tensor>> read_checkpoint(const std::string& dir) {
  std::vector<std::pair<std::string, Tensor>> out;
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir);
  for (const auto& shard : ck.shards()) {
    auto f = ck.open_shard(shard);
    for (const auto& t : f->tensors()) out.emplace_back(t.name, f->tensor(t.name).clone());
  }
  return out;
}

// Deterministic token ids in [0, vocab).
inline Tensor token_ids(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v;
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int64_t i = 0; i < batch * seq; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    v.push_back(static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab)));
  }
  return Tensor::from_vector(v, {batch, seq});
}

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

inline double rel_err(const Tensor& out, const Tensor& ref) {
  auto a = out.to(Device::cpu()).to_f32_vector(), b = ref.to(Device::cpu()).to_f32_vector();
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace graft::test
