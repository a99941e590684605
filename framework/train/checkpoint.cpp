#include "framework/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/data/token_shard.h"
#include "framework/io/atomic_file.h"
#include "framework/io/safetensors.h"
#include "framework/model/causal_lm.h"

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
  for (const char* f : {"trainer_state.json", "model.safetensors", "optimizer.safetensors"})
    if (!fs::is_regular_file(path + "/" + f)) return false;
  try {
    if (!nlohmann::json::parse(read_text(path + "/trainer_state.json")).is_object()) return false;
  } catch (const std::exception&) {
    return false;
  }
  return true;
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

std::string save_checkpoint(const std::string& dir, const CheckpointContents& c,
                            int64_t keep_last) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  GRAFT_INPUT_CHECK(!ec, dir, ": cannot create the checkpoint folder (checkpoint.dir)");
  const std::string name = step_name(c.state.step);
  const std::string tmp = str(dir, "/.tmp-", name, "-", ::getpid());
  const std::string final_path = dir + "/" + name;
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  GRAFT_INPUT_CHECK(!ec, tmp, ": cannot create the checkpoint folder");
  try {
    write_safetensors(tmp + "/model.safetensors", c.model, {{"format", "graft"}});
    write_safetensors(tmp + "/optimizer.safetensors", c.optimizer, {{"format", "graft"}});
    io::write_file_atomic(tmp + "/config.json", c.hf_config.dump(2) + "\n");
    io::write_file_atomic(tmp + "/recipe.yaml", c.recipe_yaml);
    if (!c.tokenizer_file.empty())
      io::write_file_atomic(tmp + "/tokenizer.json", read_text(c.tokenizer_file));
    io::write_file_atomic(tmp + "/trainer_state.json", c.state.to_json().dump(2) + "\n");
    io::fsync_dir(tmp);
    replace_folder(tmp, final_path);
    io::fsync_dir(dir);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw InputError(str(final_path, ": writing the checkpoint failed: ", e.what()));
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  io::write_file_atomic(dir + "/latest", name + "\n");
  // Prune: the oldest complete checkpoints beyond keep_last, and stale temp folders.
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i)
    if (all[i] != final_path) fs::remove_all(all[i], ec);
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(".tmp-step-", 0) == 0) fs::remove_all(e.path(), ec);
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

void load_model_weights(CausalLM& model, const std::string& checkpoint) {
  const std::string path = checkpoint + "/model.safetensors";
  GRAFT_INPUT_CHECK(fs::is_regular_file(path), path, ": missing (not a graft checkpoint?)");
  auto file = SafetensorsFile::open(path);
  std::string problems;
  int count = 0;
  auto add = [&](const std::string& s) { problems += str(count++ ? "; " : "", s); };
  auto params = model.named_parameters();
  for (auto& [name, p] : params) {
    const TensorInfo* info = file->find(name);
    if (!info)
      add(str("missing ", name));
    else if (info->shape != p->value.shape())
      add(str(name, " has shape ", shape_str(info->shape), ", the model expects ",
              shape_str(p->value.shape())));
  }
  for (const auto& t : file->tensors()) {
    bool known = false;
    for (auto& [name, p] : params) known = known || name == t.name;
    if (!known) add(str("unexpected ", t.name));
  }
  GRAFT_INPUT_CHECK(problems.empty(), path,
                    ": checkpoint does not match the model (another shape?): ", problems);
  for (auto& [name, p] : params) p->value.copy_from(file->tensor(name));
}

}  // namespace graft
