#include "framework/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "framework/data/token_shard.h"
#include "framework/io/atomic_file.h"
#include "framework/io/strict_json.h"
#include "framework/model/causal_lm.h"
#include "parallel/process_group.h"

namespace graft {

namespace fs = std::filesystem;

nlohmann::json TrainerState::to_json() const {
  return {{"format", "graft-checkpoint"},
          {"version", 1},
          {"step", step},
          {"data_position", data_position},
          {"optimizer_steps", optimizer_steps},
          {"skipped_total", skipped_total},
          {"consecutive_skipped", consecutive_skipped},
          {"rng", {{"data_seed", data_seed}, {"init_seed", init_seed}}},
          {"schedule", {{"type", schedule}, {"lr", lr}}},
          {"config_hash", config_hash},
          {"tokenizer", tokenizer}};
}

TrainerState TrainerState::from_json(const nlohmann::json& j, const std::string& path) {
  TrainerState s;
  try {
    GRAFT_INPUT_CHECK(j.value("format", "") == "graft-checkpoint", path,
                      ": format is not graft-checkpoint");
    s.step = j.at("step").get<int64_t>();
    s.data_position = j.at("data_position").get<uint64_t>();
    s.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
    s.skipped_total = j.at("skipped_total").get<int64_t>();
    s.consecutive_skipped = j.at("consecutive_skipped").get<int64_t>();
    s.data_seed = j.at("rng").at("data_seed").get<int64_t>();
    s.init_seed = j.at("rng").at("init_seed").get<int64_t>();
    s.schedule = j.at("schedule").at("type").get<std::string>();
    s.lr = j.at("schedule").at("lr").get<double>();
    s.config_hash = j.at("config_hash").get<std::string>();
    s.tokenizer = j.at("tokenizer").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": ", e.what()));
  }
  return s;
}

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// Moves `tmp` to `final_path`. When a checkpoint of that step already exists (a re-save), the two
// folders are swapped atomically (renameat2 RENAME_EXCHANGE), so at no moment is there no
// complete folder under the final name; the old one, now at `tmp`, is then deleted. Filesystems
// without the exchange get rename-aside + rename, a short window instead of delete + rename.
void replace_folder(const std::string& tmp, const std::string& final_path) {
  if (!fs::exists(final_path)) {
    fs::rename(tmp, final_path);
    return;
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp);
    return;
  }
  const std::string aside = tmp + ".old";
  fs::rename(final_path, aside);
  fs::rename(tmp, final_path);
  fs::remove_all(aside);
}

constexpr const char* kCommitFile = "COMMIT";

int64_t parse_step(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 5) return -1;
  const std::string digits = name.substr(5);
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), path, ": cannot read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

bool is_complete_checkpoint(const std::string& path) {
  if (!fs::is_directory(path) || parse_step(fs::path(path).filename().string()) < 0) return false;
  for (const char* f : {kCommitFile, "manifest.json", "trainer_state.json"})
    if (!fs::is_regular_file(path + "/" + f)) return false;
  try {
    const auto commit = io::read_json_file(path + "/" + kCommitFile, 1 << 16, 2);
    const auto manifest = io::read_json_file(path + "/manifest.json", size_t{1} << 30, 8);
    const auto state = io::read_json_file(path + "/trainer_state.json", 1 << 20, 4);
    return commit.is_object() && commit.value("format", "") == "graft-commit" &&
           manifest.is_object() && manifest.value("format", "") == "graft-sharded" &&
           state.is_object();
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t s = parse_step(e.path().filename().string());
    if (s >= 0 && is_complete_checkpoint(e.path().string())) found.emplace_back(s, e.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string find_latest_checkpoint(const std::string& dir) {
  const std::string latest = dir + "/latest";
  if (fs::is_regular_file(latest)) {
    std::string name = read_text(latest);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (name.find('/') == std::string::npos && is_complete_checkpoint(dir + "/" + name))
      return dir + "/" + name;
  }
  auto all = list_checkpoints(dir);
  return all.empty() ? "" : all.back();
}

namespace {

// Runs `fn` on this rank, then agrees with every rank on whether all succeeded (the agreement is
// the phase's barrier). A rank whose own step failed rethrows its error; the others throw one
// naming the checkpoint. `cleanup` runs on every rank before throwing.
template <class Fn, class Cleanup>
void collective_phase(ProcessGroup& world, const std::string& what, Fn&& fn, Cleanup&& cleanup) {
  std::exception_ptr err;
  try {
    fn();
  } catch (const fs::filesystem_error& e) {
    err = std::make_exception_ptr(
        InputError(str(what, ": writing the checkpoint failed: ", e.what())));
  } catch (...) {
    err = std::current_exception();
  }
  const double failed = world.all_reduce_scalar(err ? 1.0 : 0.0, ReduceOp::kMax);
  if (failed == 0) return;
  cleanup();
  if (err) std::rethrow_exception(err);
  throw InputError(str(what, ": writing the checkpoint failed on another rank"));
}

}  // namespace

std::string save_checkpoint(const std::string& dir, const CheckpointContents& c, int64_t keep_last,
                            ProcessGroup& world) {
  const bool root = world.rank() == 0;
  const std::string name = step_name(c.state.step);
  const std::string tmp = dir + "/.tmp-" + name;
  const std::string final_path = dir + "/" + name;
  auto remove_tmp = [&] {
    std::error_code ec;
    if (root) fs::remove_all(tmp, ec);
  };
  // 1. Rank 0 makes the temp folder (a stale one from a crashed save is removed).
  collective_phase(
      world, final_path,
      [&] {
        if (!root) return;
        std::error_code ec;
        fs::create_directories(dir, ec);
        GRAFT_INPUT_CHECK(!ec, dir, ": cannot create the checkpoint folder (checkpoint.dir)");
        fs::remove_all(tmp);
        fs::create_directory(tmp, ec);
        GRAFT_INPUT_CHECK(!ec, tmp, ": cannot create the checkpoint folder");
      },
      remove_tmp);
  // 2. Every rank writes and fsyncs its pieces.
  collective_phase(
      world, final_path, [&] { write_rank_pieces(tmp, world.rank(), c.pieces); }, remove_tmp);
  // 3. Rank 0 merges the manifest, writes the small files and COMMIT, and publishes the folder.
  collective_phase(
      world, final_path,
      [&] {
        if (!root) return;
        nlohmann::json layout = c.layout;
        if (layout.is_null()) layout = nlohmann::json::object();
        layout["world"] = world.size();
        write_manifest(tmp, world.size(), layout);
        io::write_file_atomic(tmp + "/config.json", c.hf_config.dump(2) + "\n");
        io::write_file_atomic(tmp + "/recipe.yaml", c.recipe_yaml);
        if (!c.tokenizer_file.empty())
          io::write_file_atomic(tmp + "/tokenizer.json", read_text(c.tokenizer_file));
        io::write_file_atomic(tmp + "/trainer_state.json", c.state.to_json().dump(2) + "\n");
        const nlohmann::json commit = {
            {"format", "graft-commit"}, {"step", c.state.step}, {"world", world.size()}};
        io::write_file_atomic(tmp + "/" + kCommitFile, commit.dump() + "\n");
        io::fsync_dir(tmp);
        replace_folder(tmp, final_path);
        io::fsync_dir(dir);
        io::write_file_atomic(dir + "/latest", name + "\n");
        // Prune: the oldest complete checkpoints beyond keep_last, and stale temp folders.
        std::error_code ec;
        auto all = list_checkpoints(dir);
        for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i)
          if (all[i] != final_path) fs::remove_all(all[i], ec);
        for (const auto& e : fs::directory_iterator(dir, ec))
          if (e.path().filename().string().rfind(".tmp-step-", 0) == 0)
            fs::remove_all(e.path(), ec);
      },
      remove_tmp);
  return final_path;
}

TrainerState read_trainer_state(const std::string& checkpoint) {
  const std::string path = checkpoint + "/trainer_state.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, ": ", e.what()));
  }
  return TrainerState::from_json(j, path);
}

void load_model_weights(CausalLM& model, const std::string& checkpoint, bool prefer_master) {
  const ShardedReader r = ShardedReader::open(checkpoint);
  std::string problems;
  int count = 0;
  auto add = [&](const std::string& s) { problems += str(count++ ? "; " : "", s); };
  auto check_shape = [&](const std::string& key, const Parameter& p) {
    const Shape want = spec_stored_shape(p.spec, p.value.shape());
    if (r.global_shape(key) != want)
      add(str(key, " has shape ", shape_str(r.global_shape(key)), ", the model expects ",
              shape_str(want)));
  };
  auto params = model.named_parameters();
  std::set<std::string> expected;
  // A part of a parameter (ShardSpec::part_of) is another box of its logical tensor.
  for (auto& [name, p] : params) name = logical_param_name(name, p->spec);
  for (auto& [name, p] : params) {
    const std::string key = kModelPrefix + name;
    expected.insert(key);
    if (!r.has(key))
      add(str("missing ", key));
    else
      check_shape(key, *p);
    if (prefer_master && r.has(kMasterPrefix + name)) check_shape(kMasterPrefix + name, *p);
  }
  for (const auto& n : r.names())
    if (n.rfind(kModelPrefix, 0) == 0 && !expected.count(n)) add(str("unexpected ", n));
  GRAFT_INPUT_CHECK(problems.empty(), r.manifest_path(),
                    ": checkpoint does not match the model (another shape?): ", problems);
  for (auto& [name, p] : params) {
    const std::string master = kMasterPrefix + name;
    r.read_box(prefer_master && r.has(master) ? master : kModelPrefix + name, p->spec, p->value);
  }
}

}  // namespace graft
