#include "framework/data/prepare.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/error.h"
#include "framework/data/token_shard.h"
#include "framework/io/atomic_file.h"

namespace graft {

namespace fs = std::filesystem;

PrepareStats prepare_dataset(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const std::string& out_dir, int64_t shard_tokens) {
  GRAFT_INPUT_CHECK(!files.empty(), out_dir, ": no input files to prepare");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  GRAFT_INPUT_CHECK(!ec && fs::is_directory(out_dir), out_dir, ": cannot create the folder");
  const int token_bytes = tokenizer.vocab_size() <= 65536 ? 2 : 4;
  PrepareStats st;
  std::vector<int64_t> buf;
  nlohmann::json shards = nlohmann::json::array();
  auto flush = [&] {
    if (buf.empty()) return;
    char name[32];
    std::snprintf(name, sizeof name, "shard-%05lld.bin", static_cast<long long>(st.shards));
    write_token_shard(out_dir + "/" + name, buf, token_bytes);
    shards.push_back(name);
    ++st.shards;
    buf.clear();
  };
  for (const auto& path : files) {
    std::ifstream f(path, std::ios::binary);
    GRAFT_INPUT_CHECK(f.good(), path, ": cannot read the input file");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    std::vector<int64_t> ids = tokenizer.encode(text);
    ids.push_back(tokenizer.eos_id());
    st.bytes += static_cast<int64_t>(text.size());
    st.tokens += static_cast<int64_t>(ids.size());
    ++st.documents;
    for (int64_t id : ids) {
      buf.push_back(id);
      if (static_cast<int64_t>(buf.size()) >= shard_tokens) flush();
    }
  }
  flush();
  nlohmann::json meta = {{"format", "graft-tokens"},      {"version", kTokenShardVersion},
                         {"tokenizer", tokenizer.spec()}, {"vocab_size", tokenizer.vocab_size()},
                         {"eos_id", tokenizer.eos_id()},  {"tokens", st.tokens},
                         {"documents", st.documents},     {"shards", shards}};
  io::write_file_atomic(out_dir + "/meta.json", meta.dump(2) + "\n");
  return st;
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return str(x, "/graft/data");
  if (const char* h = std::getenv("HOME"); h && *h) return str(h, "/.cache/graft/data");
  return ".cache/graft/data";
}

std::string ensure_dataset(const DataConfig& c, bool* prepared_now) {
  if (prepared_now) *prepared_now = false;
  if (!c.prepared.empty()) return c.prepared;
  std::string key_text = "tokenizer=" + c.tokenizer + "\n";
  std::vector<std::string> keyed = c.files;
  if (c.tokenizer != "byte") keyed.push_back(c.tokenizer);  // a changed tokenizer file re-prepares
  for (const auto& f : keyed) {
    struct stat st {};
    GRAFT_INPUT_CHECK(::stat(f.c_str(), &st) == 0, f, ": cannot stat the data file");
    key_text += str(fs::absolute(f).string(), " ", st.st_size, " ", st.st_mtim.tv_sec, "\n");
  }
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : key_text) h = (h ^ ch) * 1099511628211ull;
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(h));
  const std::string root = c.cache_dir.empty() ? default_cache_dir() : c.cache_dir;
  const std::string dir = root + "/" + key;
  if (fs::is_regular_file(dir + "/meta.json")) return dir;
  std::error_code ec;
  fs::create_directories(root, ec);
  GRAFT_INPUT_CHECK(!ec, root, ": cannot create the data cache folder (data.cache_dir)");
  const std::string tmp = str(dir, ".tmp-", ::getpid());
  fs::remove_all(tmp, ec);
  auto tok = make_tokenizer(c.tokenizer);
  prepare_dataset(c.files, *tok, tmp);
  fs::rename(tmp, dir, ec);
  if (ec) {  // another process won the race: use its folder
    fs::remove_all(tmp, ec);
    GRAFT_INPUT_CHECK(fs::is_regular_file(dir + "/meta.json"), dir,
                      ": cannot move the prepared data into place");
  }
  if (prepared_now) *prepared_now = true;
  return dir;
}

}  // namespace graft
