// `graft inspect PATH`: the tensors of a safetensors file or a Hugging Face checkpoint folder
// (name, dtype, shape, shard), their total parameter count and bytes, and the main fields of the
// folder's config.json. Every file is fully validated on the way; malformed input is an
// InputError (one line on stderr, exit code 2).
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "framework/io/hf_checkpoint.h"
#include "framework/io/strict_json.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

struct Row {
  std::string name, dtype, shape, shard;
};

void print_config(const std::string& path) {
  constexpr size_t kMaxConfigBytes = 16 << 20;
  nlohmann::ordered_json cfg = io::read_json_file(path, kMaxConfigBytes, 64);
  GRAFT_INPUT_CHECK(cfg.is_object(), path, ": must be a JSON object");
  std::printf("config.json:");
  for (const char* key : {"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size",
                          "tie_word_embeddings", "dtype", "torch_dtype"}) {
    if (!cfg.contains(key)) continue;
    const auto& v = cfg[key];
    std::printf(" %s=%s", key, v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
  }
  std::printf("\n");
}

void add_rows(const SafetensorsFile& f, const std::string& shard, std::vector<Row>* rows,
              uint64_t* params, uint64_t* bytes) {
  for (const TensorInfo& t : f.tensors()) {
    rows->push_back({t.name, dtype_safetensors_name(t.dtype), shape_str(t.shape), shard});
    *params += static_cast<uint64_t>(shape_numel(t.shape));
    *bytes += t.end - t.begin;
  }
}

int run_inspect(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("path", po::value<std::string>()->required(),
                     "a .safetensors file or a checkpoint folder");
  po::positional_options_description pos;
  pos.add("path", 1);
  auto vm = parse_options("inspect", "PATH", desc, args, &pos);
  if (!vm) return 0;
  const std::string path = (*vm)["path"].as<std::string>();

  struct stat st;
  GRAFT_INPUT_CHECK(::stat(path.c_str(), &st) == 0, path, ": no such file or folder");
  std::vector<Row> rows;
  uint64_t params = 0, bytes = 0;
  if (S_ISDIR(st.st_mode)) {
    ShardedCheckpoint ck = ShardedCheckpoint::open(path);
    std::printf("checkpoint %s: %zu shard(s)\n", path.c_str(), ck.shards().size());
    const std::string config = path + "/config.json";
    if (::stat(config.c_str(), &st) == 0) print_config(config);
    for (const std::string& shard : ck.shards()) {
      auto f = ck.open_shard(shard);  // validated against the index; released after this loop
      add_rows(*f, shard, &rows, &params, &bytes);
    }
  } else {
    auto f = SafetensorsFile::open(path);
    std::printf("file %s\n", path.c_str());
    for (const auto& [k, v] : f->metadata()) {
      std::printf("metadata: %s = %s\n", io::quoted(k).c_str(), io::quoted(v).c_str());
    }
    const size_t slash = path.find_last_of('/');
    add_rows(*f, slash == std::string::npos ? path : path.substr(slash + 1), &rows, &params,
             &bytes);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.name < b.name; });
  Row width{"name", "dtype", "shape", "shard"};
  size_t w[3] = {width.name.size(), width.dtype.size(), width.shape.size()};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], r.name.size());
    w[1] = std::max(w[1], r.dtype.size());
    w[2] = std::max(w[2], r.shape.size());
  }
  rows.insert(rows.begin(), width);
  for (const Row& r : rows) {
    std::printf("%-*s  %-*s  %-*s  %s\n", static_cast<int>(w[0]), r.name.c_str(),
                static_cast<int>(w[1]), r.dtype.c_str(), static_cast<int>(w[2]), r.shape.c_str(),
                r.shard.c_str());
  }
  std::printf("total: %zu tensors, %llu parameters, %llu bytes (%.2f MiB)\n", rows.size() - 1,
              static_cast<unsigned long long>(params), static_cast<unsigned long long>(bytes),
              static_cast<double>(bytes) / (1 << 20));
  return 0;
}

RegisterCommand reg{"inspect", "list the tensors, parameter count and config of a checkpoint",
                    run_inspect};

}  // namespace
}  // namespace graft::launch
