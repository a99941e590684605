#include "framework/data/sources.h"

#include <zlib.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"

#ifdef GRAFT_HAVE_ZSTD
#include <zstd.h>
#endif

namespace graft {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip_compression(const std::string& p) {
  if (ends_with(p, ".gz")) return p.substr(0, p.size() - 3);
  if (ends_with(p, ".zst")) return p.substr(0, p.size() - 4);
  return p;
}

class PlainStream : public ByteStream {
 public:
  explicit PlainStream(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "rb")) {
    GRAFT_INPUT_CHECK(f_ != nullptr, path, ": cannot read the input file");
  }
  ~PlainStream() override { std::fclose(f_); }
  size_t read(char* buf, size_t n) override {
    const size_t got = std::fread(buf, 1, n, f_);
    GRAFT_INPUT_CHECK(got > 0 || !std::ferror(f_), path_, ": read error");
    return got;
  }

 private:
  std::string path_;
  std::FILE* f_;
};

class GzStream : public ByteStream {
 public:
  explicit GzStream(const std::string& path) : path_(path), f_(gzopen(path.c_str(), "rb")) {
    GRAFT_INPUT_CHECK(f_ != nullptr, path, ": cannot read the input file");
    gzbuffer(f_, 1 << 18);
  }
  ~GzStream() override { gzclose(f_); }
  size_t read(char* buf, size_t n) override {
    const int got = gzread(f_, buf, static_cast<unsigned>(n));
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    GRAFT_INPUT_CHECK(got >= 0 && (err == Z_OK || err == Z_STREAM_END), path_,
                      ": corrupt or truncated gzip data (", msg ? msg : "?", ")");
    return static_cast<size_t>(got);
  }

 private:
  std::string path_;
  gzFile f_;
};

#ifdef GRAFT_HAVE_ZSTD
class ZstdStream : public ByteStream {
 public:
  explicit ZstdStream(const std::string& path)
      : path_(path), f_(std::fopen(path.c_str(), "rb")), ctx_(ZSTD_createDStream()) {
    GRAFT_INPUT_CHECK(f_ != nullptr, path, ": cannot read the input file");
    in_buf_.resize(ZSTD_DStreamInSize());
    ZSTD_initDStream(ctx_);
  }
  ~ZstdStream() override {
    if (f_) std::fclose(f_);
    ZSTD_freeDStream(ctx_);
  }
  size_t read(char* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (in_.pos == in_.size) {
        const size_t got = std::fread(in_buf_.data(), 1, in_buf_.size(), f_);
        if (got == 0) {
          GRAFT_INPUT_CHECK(last_ == 0, path_, ": truncated zstd data (the last frame is cut)");
          return 0;
        }
        in_ = ZSTD_inBuffer{in_buf_.data(), got, 0};
      }
      last_ = ZSTD_decompressStream(ctx_, &out, &in_);
      GRAFT_INPUT_CHECK(!ZSTD_isError(last_), path_, ": corrupt zstd data (",
                        ZSTD_getErrorName(last_), ")");
    }
    return out.pos;
  }

 private:
  std::string path_;
  std::FILE* f_;
  ZSTD_DStream* ctx_;
  std::vector<char> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  size_t last_ = 0;
};
#endif

}  // namespace

bool is_jsonl_path(const std::string& path) {
  const std::string p = strip_compression(path);
  return ends_with(p, ".jsonl") || ends_with(p, ".ndjson");
}

std::unique_ptr<ByteStream> ByteStream::open(const std::string& path) {
  if (ends_with(path, ".gz")) return std::make_unique<GzStream>(path);
  if (ends_with(path, ".zst")) {
#ifdef GRAFT_HAVE_ZSTD
    return std::make_unique<ZstdStream>(path);
#else
    throw InputError(str(path, ": zstd support is not built (install libzstd-dev and rebuild)"));
#endif
  }
  return std::make_unique<PlainStream>(path);
}

DocumentReader::DocumentReader(const std::string& path, const DataSource& source)
    : path_(path), source_(&source) {
  GRAFT_INPUT_CHECK(!ends_with(strip_compression(path), ".parquet"), path,
                    ": Parquet support is not built (Apache Arrow is not packaged for this "
                    "platform); convert it with scripts/parquet-to-jsonl.py FILE --field text -o "
                    "corpus.jsonl.gz (docs/training.md)");
  jsonl_ = is_jsonl_path(path);
  GRAFT_INPUT_CHECK(jsonl_ || source.type != "sft", path,
                    ": an sft source needs JSONL records (prompt/completion or messages)");
  in_ = ByteStream::open(path);
}

DocumentReader::~DocumentReader() = default;

bool DocumentReader::next_line(std::string& line) {
  line.clear();
  while (true) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      line.append(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      return true;
    }
    line.append(buf_, pos_, std::string::npos);
    buf_.clear();
    pos_ = 0;
    if (eof_) return !line.empty();
    buf_.resize(1 << 20);
    const size_t got = in_->read(buf_.data(), buf_.size());
    buf_.resize(got);
    if (got == 0) eof_ = true;
  }
}

void DocumentReader::parse_record(const std::string& line, Document& doc) const {
  const std::string where = str(path_, ":", line_no_);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(str(where, ": not a JSON record (", e.what(), ")"));
  }
  GRAFT_INPUT_CHECK(j.is_object(), where, ": expected a JSON object per line");
  auto string_field = [&](const nlohmann::json& o, const std::string& key, const std::string& at) {
    auto it = o.find(key);
    GRAFT_INPUT_CHECK(it != o.end(), at, ": no field '", key, "'");
    GRAFT_INPUT_CHECK(it->is_string(), at, ": field '", key, "' is not a string");
    return it->get<std::string>();
  };
  if (source_->type == "text") {
    doc.pieces.push_back({string_field(j, source_->field, where), true});
    return;
  }
  if (j.contains("messages")) {
    const auto& m = j["messages"];
    GRAFT_INPUT_CHECK(m.is_array() && !m.empty(), where,
                      ": field 'messages' must be a non-empty list of {role, content}");
    for (size_t i = 0; i < m.size(); ++i) {
      const std::string at = str(where, ": messages[", i, "]");
      GRAFT_INPUT_CHECK(m[i].is_object(), at, ": expected {role, content}");
      const std::string role = string_field(m[i], "role", at);
      const std::string content = string_field(m[i], "content", at);
      const bool assistant = role == "assistant";
      doc.pieces.push_back({"<|" + role + "|>\n", false});
      doc.pieces.push_back({content + "\n", assistant});
    }
    return;
  }
  GRAFT_INPUT_CHECK(j.contains("prompt") || j.contains("completion"), where,
                    ": an sft record needs prompt and completion strings or a messages list");
  doc.pieces.push_back({string_field(j, "prompt", where), false});
  doc.pieces.push_back({string_field(j, "completion", where), true});
}

bool DocumentReader::next(Document& doc) {
  doc.pieces.clear();
  doc.bytes = 0;
  if (done_) return false;
  if (!jsonl_) {  // the whole file is one document
    std::string text;
    std::vector<char> chunk(1 << 20);
    while (size_t got = in_->read(chunk.data(), chunk.size())) text.append(chunk.data(), got);
    doc.bytes = static_cast<int64_t>(text.size());
    doc.pieces.push_back({std::move(text), true});
    done_ = true;
    return true;
  }
  std::string line;
  while (next_line(line)) {
    ++line_no_;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    parse_record(line, doc);
    doc.bytes = static_cast<int64_t>(line.size()) + 1;
    return true;
  }
  done_ = true;
  return false;
}

}  // namespace graft
