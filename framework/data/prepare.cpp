#include "framework/data/prepare.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "framework/core/error.h"
#include "framework/data/sampler.h"
#include "framework/data/token_shard.h"
#include "framework/io/atomic_file.h"

namespace graft {

namespace fs = std::filesystem;

namespace {

// Bumped when the document layout in the stream changes (2: [BOS] tokens EOS, loss masks).
constexpr int kPrepareFormat = 2;

uint64_t fnv1a(const char* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h;
}

std::string hex16(uint64_t h) {
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(h));
  return key;
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// A document and its tokens: [BOS] pieces... EOS, with one loss-mask byte per token.
struct Job {
  Document doc;
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
};

void tokenize(const Tokenizer& tok, Job& j) {
  j.ids.clear();
  j.mask.clear();
  if (tok.bos_id() >= 0 && tok.bos_id() != tok.eos_id()) {
    j.ids.push_back(tok.bos_id());
    j.mask.push_back(0);
  }
  for (const DocPiece& p : j.doc.pieces) {
    std::vector<int64_t> ids = tok.encode(p.text);
    j.ids.insert(j.ids.end(), ids.begin(), ids.end());
    j.mask.insert(j.mask.end(), ids.size(), p.loss ? 1 : 0);
  }
  j.ids.push_back(tok.eos_id());
  j.mask.push_back(1);
  j.doc.pieces.clear();  // the text is no longer needed
}

class ShardWriter {
 public:
  ShardWriter(std::string dir, int token_bytes, int64_t shard_tokens, bool with_mask)
      : dir_(std::move(dir)),
        token_bytes_(token_bytes),
        shard_tokens_(shard_tokens),
        with_mask_(with_mask) {}
  void add(const Job& j) {
    for (size_t i = 0; i < j.ids.size(); ++i) {
      ids_.push_back(j.ids[i]);
      if (with_mask_) mask_.push_back(j.mask[i]);
      if (static_cast<int64_t>(ids_.size()) >= shard_tokens_) flush();
    }
  }
  void flush() {
    if (ids_.empty()) return;
    char name[40];
    std::snprintf(name, sizeof name, "shard-%05zu", shards_.size());
    write_token_shard(dir_ + "/" + name + ".bin", ids_, token_bytes_);
    shards_.push_back(std::string(name) + ".bin");
    if (with_mask_) {
      write_token_shard(dir_ + "/" + name + ".mask.bin", mask_, 1);
      masks_.push_back(std::string(name) + ".mask.bin");
    }
    ids_.clear();
    mask_.clear();
  }
  const std::vector<std::string>& shards() const { return shards_; }
  const std::vector<std::string>& masks() const { return masks_; }

 private:
  std::string dir_;
  int token_bytes_;
  int64_t shard_tokens_;
  bool with_mask_;
  std::vector<int64_t> ids_;
  std::vector<int64_t> mask_;
  std::vector<std::string> shards_, masks_;
};

// Tokenizes jobs on `tokenizers.size()` threads, each a contiguous slice (order is kept).
void tokenize_all(const std::vector<std::unique_ptr<Tokenizer>>& tokenizers,
                  std::vector<Job>& jobs) {
  const size_t t = std::min(tokenizers.size(), jobs.size());
  if (t <= 1) {
    for (Job& j : jobs) tokenize(*tokenizers[0], j);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(t);
  for (size_t k = 0; k < t; ++k) {
    pool.emplace_back([&, k] {
      try {
        for (size_t i = k * jobs.size() / t; i < (k + 1) * jobs.size() / t; ++i)
          tokenize(*tokenizers[k], jobs[i]);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Whether copy `pass` of document `doc` of source `source` (weight w) is written.
bool include_copy(double w, size_t source, int64_t doc, int64_t pass) {
  const double whole = std::floor(w);
  if (pass < static_cast<int64_t>(whole)) return true;
  const uint64_t h = splitmix64(splitmix64(source + 1) ^ static_cast<uint64_t>(doc));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < w - whole;
}

std::string meta_key(const std::string& dir) {
  std::ifstream f(dir + "/meta.json");
  if (!f.good()) return "";
  try {
    return nlohmann::json::parse(f).value("key", "");
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

}  // namespace

std::string tokenizer_hash(const std::string& spec) {
  if (spec == "byte") return "byte";
  std::ifstream f(spec, std::ios::binary);
  GRAFT_INPUT_CHECK(f.good(), spec, ": cannot read the tokenizer file");
  uint64_t h = 1469598103934665603ull;
  std::vector<char> buf(1 << 16);
  while (f.read(buf.data(), static_cast<std::streamsize>(buf.size())) || f.gcount() > 0)
    h = fnv1a(buf.data(), static_cast<size_t>(f.gcount()), h);
  return "fnv1a64:" + hex16(h);
}

std::string dataset_key(const std::vector<DataSource>& sources, const std::string& spec) {
  std::string k = str("graft-prepare ", kPrepareFormat, "\ntokenizer=", tokenizer_hash(spec), "\n");
  for (const DataSource& s : sources) {
    char w[32];
    std::snprintf(w, sizeof w, "%.17g", s.weight);
    k += str("source ", s.type, " ", s.field, " ", w, "\n");
    for (const auto& f : s.files) {
      struct stat st {};
      GRAFT_INPUT_CHECK(::stat(f.c_str(), &st) == 0, f, ": cannot stat the data file");
      k += str(fs::absolute(f).string(), " ", st.st_size, " ", st.st_mtim.tv_sec, ".",
               st.st_mtim.tv_nsec, "\n");
    }
  }
  return hex16(fnv1a(k.data(), k.size()));
}

PrepareStats prepare_sources(const std::vector<DataSource>& sources, const std::string& spec,
                             const std::string& out_dir, const PrepareOptions& opt) {
  size_t nfiles = 0;
  for (const auto& s : sources) nfiles += s.files.size();
  GRAFT_INPUT_CHECK(nfiles > 0, out_dir, ": no input files to prepare");
  const std::string key = dataset_key(sources, spec);
  PrepareStats st;
  if (meta_key(out_dir) == key) {  // already prepared from the same inputs
    TokenDataset d = TokenDataset::open(out_dir);
    st.tokens = d.size();
    st.reused = true;
    return st;
  }
  std::error_code ec;
  GRAFT_INPUT_CHECK(!fs::exists(out_dir) || fs::is_empty(out_dir, ec) ||
                        fs::is_regular_file(out_dir + "/meta.json"),
                    out_dir,
                    ": exists and is not a prepared dataset folder; refusing to overwrite");
  const std::string tmp = str(out_dir, ".tmp-", ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  GRAFT_INPUT_CHECK(!ec && fs::is_directory(tmp), tmp, ": cannot create the folder");

  const int threads = opt.threads > 0
                          ? opt.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<Tokenizer>> toks;
  for (int i = 0; i < threads; ++i) toks.push_back(make_tokenizer(spec));
  const Tokenizer& tok = *toks[0];
  bool with_mask = false;
  for (const auto& s : sources) with_mask = with_mask || s.type == "sft";
  ShardWriter writer(tmp, tok.vocab_size() <= 65536 ? 2 : 4, opt.shard_tokens, with_mask);

  const double t0 = now_s();
  double last = t0;
  auto report = [&](const std::string& file, bool final) {
    const double t = now_s();
    if (!opt.progress || (!final && t - last < opt.progress_every_s)) return;
    last = t;
    char line[256];
    std::snprintf(line, sizeof line, "data: %lld documents, %.2fM tokens, %.1f MB/s%s%s\n",
                  static_cast<long long>(st.documents), st.tokens / 1e6,
                  st.bytes / 1e6 / std::max(t - t0, 1e-9), file.empty() ? "" : " (",
                  file.empty() ? "" : (file + ")").c_str());
    *opt.progress << line << std::flush;
  };

  nlohmann::json source_meta = nlohmann::json::array();
  std::vector<Job> jobs;
  int64_t chunk = 0;
  int64_t src_docs = 0, src_tokens = 0;
  auto drain = [&] {
    tokenize_all(toks, jobs);
    for (const Job& j : jobs) {
      writer.add(j);
      st.tokens += static_cast<int64_t>(j.ids.size());
      src_tokens += static_cast<int64_t>(j.ids.size());
    }
    st.documents += static_cast<int64_t>(jobs.size());
    src_docs += static_cast<int64_t>(jobs.size());
    jobs.clear();
    chunk = 0;
  };
  for (size_t si = 0; si < sources.size(); ++si) {
    const DataSource& s = sources[si];
    src_docs = src_tokens = 0;
    const int64_t passes = static_cast<int64_t>(std::ceil(s.weight));
    for (int64_t pass = 0; pass < passes; ++pass) {
      int64_t doc = 0;
      for (const auto& file : s.files) {
        DocumentReader reader(file, s);
        Job j;
        while (reader.next(j.doc)) {
          st.bytes += j.doc.bytes;
          chunk += j.doc.bytes;
          if (include_copy(s.weight, si, doc++, pass)) jobs.push_back(std::move(j));
          j = Job();
          if (chunk >= opt.chunk_bytes || jobs.size() >= 65536) {
            drain();
            report(file, false);
          }
        }
      }
    }
    drain();
    source_meta.push_back({{"path", s.path},
                           {"type", s.type},
                           {"field", s.field},
                           {"weight", s.weight},
                           {"documents", src_docs},
                           {"tokens", src_tokens}});
  }
  writer.flush();
  st.shards = static_cast<int64_t>(writer.shards().size());
  report("", true);
  nlohmann::json meta = {{"format", "graft-tokens"},
                         {"version", kTokenShardVersion},
                         {"tokenizer", tok.spec()},
                         {"tokenizer_hash", tokenizer_hash(spec)},
                         {"vocab_size", tok.vocab_size()},
                         {"eos_id", tok.eos_id()},
                         {"bos_id", tok.bos_id() != tok.eos_id() ? tok.bos_id() : -1},
                         {"tokens", st.tokens},
                         {"documents", st.documents},
                         {"shards", writer.shards()},
                         {"key", key},
                         {"sources", source_meta}};
  if (with_mask) meta["loss_mask"] = writer.masks();
  io::write_file_atomic(tmp + "/meta.json", meta.dump(2) + "\n");
  if (fs::is_regular_file(out_dir + "/meta.json")) fs::remove_all(out_dir, ec);  // a stale one
  fs::rename(tmp, out_dir, ec);
  if (ec) {  // another process won the race: use its folder when it holds the same preparation
    fs::remove_all(tmp, ec);
    GRAFT_INPUT_CHECK(meta_key(out_dir) == key, out_dir,
                      ": cannot move the prepared data into place");
    st.reused = true;
  }
  return st;
}

PrepareStats prepare_dataset(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const std::string& out_dir, int64_t shard_tokens) {
  DataSource s;
  s.path = "(files)";
  s.files = files;
  PrepareOptions opt;
  opt.shard_tokens = shard_tokens;
  return prepare_sources({s}, tokenizer.spec(), out_dir, opt);
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return str(x, "/graft/data");
  if (const char* h = std::getenv("HOME"); h && *h) return str(h, "/.cache/graft/data");
  return ".cache/graft/data";
}

std::string ensure_dataset(const DataConfig& c, bool* prepared_now, std::ostream* progress) {
  if (prepared_now) *prepared_now = false;
  if (!c.prepared.empty()) {
    TokenDataset d = TokenDataset::open(c.prepared);
    std::string have = d.tokenizer_hash();
    if (have.empty() && (d.tokenizer() == "byte" || fs::is_regular_file(d.tokenizer())))
      have = tokenizer_hash(d.tokenizer());  // folders written before the hash was recorded
    const std::string want = tokenizer_hash(c.tokenizer);
    GRAFT_INPUT_CHECK(have == want, c.prepared,
                      "/meta.json: the shards were prepared with "
                      "tokenizer ",
                      d.tokenizer(), " (", have.empty() ? "unknown" : have,
                      ") but data.tokenizer = ", c.tokenizer, " (", want,
                      "); set data.tokenizer to the shards' tokenizer or prepare them again");
    return c.prepared;
  }
  std::vector<DataSource> sources = c.sources;
  if (sources.empty() && !c.files.empty()) {
    DataSource s;
    s.path = "(files)";
    s.files = c.files;
    sources.push_back(s);
  }
  const std::string root = c.cache_dir.empty() ? default_cache_dir() : c.cache_dir;
  const std::string dir = root + "/" + dataset_key(sources, c.tokenizer);
  if (fs::is_regular_file(dir + "/meta.json")) return dir;
  std::error_code ec;
  fs::create_directories(root, ec);
  GRAFT_INPUT_CHECK(!ec, root, ": cannot create the data cache folder (data.cache_dir)");
  PrepareOptions opt;
  opt.progress = progress;
  PrepareStats st = prepare_sources(sources, c.tokenizer, dir, opt);
  if (prepared_now) *prepared_now = !st.reused;
  return dir;
}

}  // namespace graft
