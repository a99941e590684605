#include "framework/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/error.h"
#include "framework/io/atomic_file.h"

namespace graft {

namespace {
constexpr char kMagic[8] = {'G', 'R', 'A', 'F', 'T', 'T', 'O', 'K'};

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
}  // namespace

void write_token_shard(const std::string& path, const std::vector<int64_t>& tokens,
                       int token_bytes) {
  GRAFT_CHECK(token_bytes == 1 || token_bytes == 2 || token_bytes == 4,
              "token_bytes = ", token_bytes);
  const int64_t limit = token_bytes == 1 ? 0xFF : token_bytes == 2 ? 0xFFFF : 0xFFFFFFFFll;
  std::string s;
  s.reserve(kTokenShardHeaderBytes + tokens.size() * token_bytes);
  s.append(kMagic, 8);
  put<uint32_t>(s, kTokenShardVersion);
  put<uint32_t>(s, static_cast<uint32_t>(token_bytes));
  put<uint64_t>(s, tokens.size());
  put<uint64_t>(s, 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t t = tokens[i];
    GRAFT_INPUT_CHECK(t >= 0 && t <= limit, path, ": token ", i, " = ", t, " does not fit in ",
                      token_bytes * 8, " bits");
    if (token_bytes == 1)
      put<uint8_t>(s, static_cast<uint8_t>(t));
    else if (token_bytes == 2)
      put<uint16_t>(s, static_cast<uint16_t>(t));
    else
      put<uint32_t>(s, static_cast<uint32_t>(t));
  }
  io::write_file_atomic(path, s);
}

std::shared_ptr<TokenShard> TokenShard::open(const std::string& path) {
  std::shared_ptr<TokenShard> sh(new TokenShard());
  sh->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  GRAFT_INPUT_CHECK(fd >= 0, path, ": cannot open token shard");
  struct stat st {};
  ::fstat(fd, &st);
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kTokenShardHeaderBytes) {
    ::close(fd);
    throw InputError(str(path, ": ", size, " bytes, shorter than the 32-byte token shard header"));
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  GRAFT_INPUT_CHECK(m != MAP_FAILED, path, ": mmap failed");
  sh->map_ = m;
  sh->map_bytes_ = size;
  const auto* p = static_cast<const unsigned char*>(m);
  GRAFT_INPUT_CHECK(std::memcmp(p, kMagic, 8) == 0, path,
                    ": not a token shard (magic is not GRAFTTOK)");
  uint32_t version, tb;
  uint64_t count;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&tb, p + 12, 4);
  std::memcpy(&count, p + 16, 8);
  GRAFT_INPUT_CHECK(version == kTokenShardVersion, path, ": token shard version ", version,
                    ", expected ", kTokenShardVersion);
  GRAFT_INPUT_CHECK(tb == 2 || tb == 4 || (tb == 1 && path.ends_with(".mask.bin")), path,
                    ": bytes per token = ", tb, ", expected 2 or 4");
  GRAFT_INPUT_CHECK(
      count <= (size - kTokenShardHeaderBytes) / tb && kTokenShardHeaderBytes + count * tb == size,
      path, ": header says ", count, " tokens of ", tb, " bytes but the file has ", size,
      " bytes (expected ", kTokenShardHeaderBytes, " + ", count, " * ", tb, ")");
  sh->tokens_ = p + kTokenShardHeaderBytes;
  sh->count_ = static_cast<int64_t>(count);
  sh->token_bytes_ = static_cast<int>(tb);
  return sh;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

int64_t TokenShard::at(int64_t i) const {
  GRAFT_CHECK(i >= 0 && i < count_, "token index ", i, " out of ", count_);
  if (token_bytes_ == 1) return tokens_[i];
  if (token_bytes_ == 2) {
    uint16_t v;
    std::memcpy(&v, tokens_ + 2 * i, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, tokens_ + 4 * i, 4);
  return v;
}

void TokenShard::read(int64_t begin, int64_t n, int64_t* out) const {
  GRAFT_CHECK(begin >= 0 && n >= 0 && begin + n <= count_, "range ", begin, "+", n, " of ", count_);
  for (int64_t i = 0; i < n; ++i) out[i] = at(begin + i);
}

TokenDataset TokenDataset::open(const std::string& dir) {
  TokenDataset d;
  d.dir_ = dir;
  const std::string meta_path = dir + "/meta.json";
  std::ifstream f(meta_path);
  GRAFT_INPUT_CHECK(f.good(), meta_path, ": cannot read (prepare data with graft data prepare)");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(f);
    GRAFT_INPUT_CHECK(meta.value("format", "") == "graft-tokens", meta_path,
                      ": format is not graft-tokens");
    d.tokenizer_ = meta.at("tokenizer").get<std::string>();
    d.vocab_size_ = meta.at("vocab_size").get<int64_t>();
    d.eos_id_ = meta.at("eos_id").get<int64_t>();
    d.bos_id_ = meta.value("bos_id", int64_t{-1});
    d.tokenizer_hash_ = meta.value("tokenizer_hash", "");
    auto open_shard = [&](const nlohmann::json& s) {
      const std::string name = s.get<std::string>();
      GRAFT_INPUT_CHECK(name.find('/') == std::string::npos && name != "..", meta_path,
                        ": shard name '", name, "' must be a plain file name");
      return TokenShard::open(dir + "/" + name);
    };
    for (const auto& s : meta.at("shards")) {
      d.starts_.push_back(d.total_);
      d.shards_.push_back(open_shard(s));
      d.total_ += d.shards_.back()->size();
    }
    if (meta.contains("loss_mask")) {
      const auto& m = meta.at("loss_mask");
      GRAFT_INPUT_CHECK(m.size() == d.shards_.size(), meta_path, ": ", m.size(),
                        " loss_mask shards for ", d.shards_.size(), " token shards");
      for (size_t i = 0; i < m.size(); ++i) {
        d.masks_.push_back(open_shard(m[i]));
        GRAFT_INPUT_CHECK(d.masks_.back()->size() == d.shards_[i]->size(), meta_path,
                          ": loss_mask shard ", m[i].get<std::string>(), " holds ",
                          d.masks_.back()->size(), " entries for ", d.shards_[i]->size(),
                          " tokens");
      }
    }
    GRAFT_INPUT_CHECK(meta.at("tokens").get<int64_t>() == d.total_, meta_path,
                      ": tokens = ", meta.at("tokens").get<int64_t>(), " but the shards hold ",
                      d.total_);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(meta_path, ": ", e.what()));
  }
  return d;
}

namespace {
// Calls f(shard, local begin, count, offset into the output) for the pieces of [begin, begin + n).
template <class F>
void for_pieces(const std::vector<int64_t>& starts,
                const std::vector<std::shared_ptr<TokenShard>>& shards, int64_t begin, int64_t n,
                F&& f) {
  size_t s = std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1;
  int64_t done = 0;
  while (n > 0) {
    const int64_t local = begin - starts[s];
    const int64_t take = std::min(n, shards[s]->size() - local);
    f(*shards[s], local, take, done);
    done += take;
    begin += take;
    n -= take;
    ++s;
  }
}
}  // namespace

void TokenDataset::read(int64_t begin, int64_t n, int64_t* out) const {
  GRAFT_CHECK(begin >= 0 && begin + n <= total_, "range ", begin, "+", n, " of ", total_);
  for_pieces(
      starts_, shards_, begin, n,
      [&](const TokenShard& sh, int64_t b, int64_t k, int64_t o) { sh.read(b, k, out + o); });
}

void TokenDataset::read_loss_mask(int64_t begin, int64_t n, uint8_t* out) const {
  GRAFT_CHECK(has_loss_mask(), dir_, ": no loss mask");
  GRAFT_CHECK(begin >= 0 && begin + n <= total_, "range ", begin, "+", n, " of ", total_);
  for_pieces(starts_, masks_, begin, n, [&](const TokenShard& sh, int64_t b, int64_t k, int64_t o) {
    for (int64_t i = 0; i < k; ++i) out[o + i] = static_cast<uint8_t>(sh.at(b + i));
  });
}

}  // namespace graft
