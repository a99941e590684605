#include "framework/model/hf_loader.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <thread>

#include "framework/io/hf_checkpoint.h"
#include "framework/model/weight_slices.h"
#include "framework/model/weight_table.h"
#include "parallel/launch.h"

namespace graft {
namespace {

// Copies block `lp` of the HF tensor `src` (a view of the mapped shard) into the parameter (any
// device, any dtype). Returns the bytes of host staging buffers it held.
uint64_t fill_block(Parameter& p, const LocalPiece& lp, const Tensor& src) {
  Tensor from = box_view(src, lp.hf_offset, lp.box);
  Tensor to = box_view(p.value, lp.local_offset, lp.box);
  if (p.value.device().is_cpu()) {
    copy_box(to, from);
    return 0;
  }
  Tensor host = Tensor::empty(lp.box, p.value.dtype());
  copy_box(host, from);
  if (to.is_contiguous()) {
    to.copy_from(host);
    return host.nbytes();
  }
  Tensor whole = p.value.to(Device::cpu());
  box_view(whole, lp.local_offset, lp.box).copy_from(host);
  p.value.copy_from(whole);
  return host.nbytes() + whole.nbytes();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

bool loadable_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16 || t == DType::kF64;
}

// Where each HF tensor goes: (entry index, piece index) pairs.
using Targets = std::map<std::string, std::vector<std::pair<size_t, size_t>>>;

Targets targets_of(const WeightTable& t) {
  Targets out;
  for (size_t i = 0; i < t.params.size(); ++i)
    for (size_t j = 0; j < t.params[i].pieces.size(); ++j)
      out[t.params[i].pieces[j].hf_name].emplace_back(i, j);
  return out;
}

constexpr uint64_t kSplitmixGolden = 0x9e3779b97f4a7c15ULL;

uint64_t stream_next(uint64_t& s) {  // splitmix64
  uint64_t z = (s += kSplitmixGolden);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// d[0, n) := normal(0, stddev) draws, Box-Muller on pairs of splitmix64 draws from state `s`:
// pair p takes the stream's draws 2p+1 and 2p+2. splitmix64's state after k draws is
// s + k * golden, so each thread starts its range of pairs at its own state and the values are
// the same whatever the thread count (a 1B model initialises in seconds rather than a minute).
void fill_normal(float* d, int64_t n, uint64_t s, double stddev) {
  const int64_t pairs = (n + 1) / 2;
  auto run = [=](int64_t p0, int64_t p1) {
    uint64_t st = s + static_cast<uint64_t>(2 * p0) * kSplitmixGolden;
    for (int64_t p = p0; p < p1; ++p) {
      const double u1 = (static_cast<double>(stream_next(st) >> 11) + 1.0) / 9007199254740993.0;
      const double u2 = static_cast<double>(stream_next(st) >> 11) / 9007199254740992.0;
      const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
      const int64_t k = 2 * p;
      d[k] = static_cast<float>(r * std::cos(2 * M_PI * u2));
      if (k + 1 < n) d[k + 1] = static_cast<float>(r * std::sin(2 * M_PI * u2));
    }
  };
  // The host's cores shared by the ranks on it.
  const int64_t cores = std::max<int64_t>(
      1, std::thread::hardware_concurrency() / std::max(1, world_info().local_size));
  const int64_t threads = std::min<int64_t>(cores, std::max<int64_t>(1, pairs >> 16));
  const int64_t per = (pairs + threads - 1) / threads;
  std::vector<std::thread> pool;
  int64_t t = 1;  // range 0 is the calling thread's
  try {
    for (; t < threads; ++t)
      pool.emplace_back(run, std::min(pairs, t * per), std::min(pairs, (t + 1) * per));
  } catch (const std::system_error&) {  // no more threads: this one does the ranges left
    run(std::min(pairs, t * per), pairs);
  }
  run(0, std::min(pairs, per));
  for (auto& th : pool) th.join();
}

// Every parameter's blocks; parameters with rows no block covers (the vocabulary padded to a
// multiple of tp) are zeroed first, so padding is zero and never read.
std::vector<std::vector<LocalPiece>> blocks_zeroing_padding(const WeightTable& table) {
  std::vector<std::vector<LocalPiece>> blocks(table.params.size());
  for (size_t i = 0; i < table.params.size(); ++i) {
    blocks[i] = local_pieces(table.params[i]);
    int64_t held = 0;
    for (const LocalPiece& b : blocks[i]) held += b.numel();
    Parameter& p = *table.params[i].parameter;
    if (held < p.value.numel()) p.value.zero_();
  }
  return blocks;
}

// ShardedCheckpoint::open stops at the first shard file that is missing; to report every lost
// tensor at once, read the index first and name each missing shard with all the tensors it was to
// hold. A malformed index is left to ShardedCheckpoint::open to report.
void check_shard_files(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream f(index_path);
  if (!f) return;
  nlohmann::json index = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return;
  std::map<std::string, std::vector<std::string>> lost;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) return;
    const std::string file = shard.get<std::string>();
    if (file.find('/') != std::string::npos) return;
    if (!std::filesystem::is_regular_file(dir + "/" + file)) lost[file].push_back(name);
  }
  if (lost.empty()) return;
  std::string msg;
  for (const auto& [file, names] : lost)
    msg += str(msg.empty() ? "" : "; ", file, " (to hold ", names.size(), " tensors: ", join(names),
               ")");
  throw InputError(str(index_path, ": ", lost.size(), " missing shard files: ", msg));
}

}  // namespace

HfLoadStats load_hf_weights(CausalLM& model, const std::string& dir) {
  WeightTable table = build_weight_table(model);
  const Targets targets = targets_of(table);
  std::vector<std::vector<bool>> filled(table.params.size());
  const std::vector<std::vector<LocalPiece>> blocks = blocks_zeroing_padding(table);
  for (size_t i = 0; i < table.params.size(); ++i)
    filled[i].assign(table.params[i].pieces.size(), false);

  check_shard_files(dir);
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir);
  HfLoadStats stats;
  std::vector<std::string> shard_errors, unexpected, bad_shape, bad_dtype;
  std::set<std::string> seen;
  for (const std::string& shard : ck.shards()) {
    std::weak_ptr<SafetensorsFile> watch;
    {
      std::shared_ptr<SafetensorsFile> f;
      try {
        f = ck.open_shard(shard);
      } catch (const InputError& e) {
        shard_errors.push_back(e.what());
        continue;
      }
      watch = f;
      ++stats.shards_read;
      stats.total_shard_bytes += f->file_size();
      stats.largest_shard_bytes = std::max<uint64_t>(stats.largest_shard_bytes, f->file_size());
      for (const TensorInfo& info : f->tensors()) {
        seen.insert(info.name);
        auto it = targets.find(info.name);
        if (it == targets.end()) {
          if (!is_dropped_hf_key(info.name, model.config()))
            unexpected.push_back(str(info.name, " (", shard, ")"));
          continue;
        }
        const Shape& want = table.hf_shapes.at(info.name);
        if (info.shape != want) {
          bad_shape.push_back(str(info.name, " is ", shape_str(info.shape), " in ", shard,
                                  ", expected ", shape_str(want)));
          continue;
        }
        if (!loadable_dtype(info.dtype)) {
          bad_dtype.push_back(str(info.name, " is ", dtype_safetensors_name(info.dtype), " in ",
                                  shard, ", expected F32, BF16, F16 or F64"));
          continue;
        }
        Tensor src = f->tensor(info.name);
        for (auto [i, j] : it->second) {
          for (const LocalPiece& b : blocks[i]) {
            if (b.piece != j) continue;
            stats.peak_buffer_bytes =
                std::max(stats.peak_buffer_bytes, fill_block(*table.params[i].parameter, b, src));
            stats.bytes_read += static_cast<uint64_t>(b.numel()) * dtype_size(info.dtype);
          }
          filled[i][j] = true;
        }
        ++stats.tensors_read;
        // What the kernel says this process holds of the shard now, then let the tensor go.
        stats.peak_mapped_bytes = std::max(stats.peak_mapped_bytes, f->resident_bytes());
        f->release_pages(info);
      }
    }
    // The shard must be unmapped now: nothing may keep a view of it alive.
    GRAFT_CHECK(watch.expired(), "shard ", shard, " still mapped after loading it");
  }

  std::vector<std::string> missing, partial;
  std::set<std::string> missing_set;
  for (size_t i = 0; i < table.params.size(); ++i) {
    const HfParamEntry& e = table.params[i];
    std::vector<std::string> have, lack;
    for (size_t j = 0; j < e.pieces.size(); ++j) {
      const std::string& n = e.pieces[j].hf_name;
      (filled[i][j] ? have : lack).push_back(n);
      if (!filled[i][j] && !seen.count(n) && missing_set.insert(n).second) missing.push_back(n);
    }
    if (!have.empty() && !lack.empty())
      partial.push_back(str(e.param, " (has ", join(have), "; lacks ", join(lack), ")"));
  }
  std::vector<std::string> parts;
  auto section = [&](const char* what, const std::vector<std::string>& v) {
    if (!v.empty()) parts.push_back(str(v.size(), " ", what, ": ", join(v)));
  };
  section("unreadable shards", shard_errors);
  section("missing tensors", missing);
  section("partly filled parameters", partial);
  section("unexpected tensors", unexpected);
  section("wrong shapes", bad_shape);
  section("wrong dtypes", bad_dtype);
  if (!parts.empty()) {
    std::string msg;
    for (const auto& p : parts) msg += (msg.empty() ? "" : "; ") + p;
    throw InputError(
        str(dir, ": checkpoint does not match the ", model.config().arch, " model: ", msg));
  }
  return stats;
}

void read_generation_config(const std::string& dir, ModelConfig& c) {
  const std::string path = dir + "/generation_config.json";
  std::ifstream f(path);
  if (!f) return;
  nlohmann::json g = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  GRAFT_INPUT_CHECK(g.is_object(), path, ": expected a JSON object");
  auto it = g.find("eos_token_id");
  if (it == g.end()) return;
  std::vector<int64_t> eos;
  if (it->is_number_integer()) {
    eos.push_back(it->get<int64_t>());
  } else if (it->is_array()) {
    for (const auto& x : *it) {
      GRAFT_INPUT_CHECK(x.is_number_integer(), path, ": eos_token_id = ", it->dump(),
                        ", expected integers");
      eos.push_back(x.get<int64_t>());
    }
  } else {
    GRAFT_INPUT_CHECK(it->is_null(), path, ": eos_token_id = ", it->dump(),
                      ", expected an integer, a list or null");
  }
  c.eos_token_ids = eos;
}

std::unique_ptr<CausalLM> load_hf_model(const std::string& dir, const HfLoadOptions& opt,
                                        HfLoadStats* stats) {
  ModelConfig c = load_hf_config(dir + "/config.json");
  read_generation_config(dir, c);
  c.decoder.params_dtype = opt.params_dtype;
  c.decoder.device = opt.device;
  BuildContext ctx{opt.device, opt.params_dtype, opt.groups ? opt.groups : single_process_groups(),
                   nullptr};
  ctx.fp32_residual = opt.fp32_residual;
  auto model = build_model(c, ctx);
  HfLoadStats s = load_hf_weights(*model, dir);
  if (stats) *stats = s;
  return model;
}

void init_hf_weights(CausalLM& model, uint64_t seed) {
  WeightTable table = build_weight_table(model);
  const Targets targets = targets_of(table);
  const std::vector<std::vector<LocalPiece>> blocks = blocks_zeroing_padding(table);
  const ModelConfig& c = model.config();
  for (const std::string& name : table.hf_names) {
    const Shape& shape = table.hf_shapes.at(name);
    Tensor t = Tensor::empty(shape, DType::kF32);
    const bool is_bias = name.size() >= 4 && name.substr(name.size() - 4) == "bias";
    if (shape.size() >= 2) {
      uint64_t s = seed;
      for (char ch : name) s = (s ^ static_cast<uint8_t>(ch)) * 0x100000001b3ULL;
      fill_normal(t.data<float>(), t.numel(), s, c.initializer_range);
    } else {
      const float v = is_bias || c.decoder.zero_centered_gamma ? 0.0f : 1.0f;
      std::fill_n(t.data<float>(), t.numel(), v);
    }
    // Each rank keeps only its blocks of the tensor (its tp slices; the whole tensor at tp1).
    for (auto [i, j] : targets.at(name))
      for (const LocalPiece& b : blocks[i])
        if (b.piece == j) fill_block(*table.params[i].parameter, b, t);
  }
}

}  // namespace graft
