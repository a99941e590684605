// Reading documents from data sources, streaming: plain text, JSONL, compressed by gzip or zstd.
//
// A file's format follows its name: a trailing .gz (zlib) or .zst (libzstd) is decompressed as it
// is read; then *.jsonl / *.ndjson is JSON Lines (one record per line, blank lines skipped),
// *.parquet is refused (Parquet support is not built, see docs/training.md), anything else is
// plain text whose whole content is one document.
//
// Source types (data.sources[].type):
//   text: a JSONL record's string field `field` (default "text") is one document.
//   sft:  a record is {"prompt": P, "completion": C} or {"messages": [{"role", "content"}...]}.
//         Pieces are tokenized separately and concatenated; only completion pieces are counted
//         in the loss. messages render with this template, one block per message:
//           "<|ROLE|>\n" (not counted) + content + "\n" (counted when ROLE is assistant)
//         and the document ends with EOS (counted). prompt/completion is P (not counted), C
//         (counted), EOS (counted). Plain-text files in an sft source are an InputError.
// Errors are InputErrors naming "file:line" (or the file for whole-file problems: unreadable,
// truncated or corrupt compression).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace graft {

struct DataSource {
  std::string path;                // a file or a glob pattern (as written in the recipe)
  std::vector<std::string> files;  // its expansion, sorted
  std::string type = "text";       // text | sft
  std::string field = "text";      // JSONL field of a text source
  double weight = 1.0;             // mixture weight, > 0 (see prepare.h)
};

// One document: pieces of text, each counted in the loss or not (text documents: one piece).
struct DocPiece {
  std::string text;
  bool loss = true;
};
struct Document {
  std::vector<DocPiece> pieces;
  int64_t bytes = 0;  // of the input it came from
};

// Decompressed bytes of a file, read in chunks.
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Up to n bytes into buf; 0 at the end. InputError naming the file on corruption/truncation.
  virtual size_t read(char* buf, size_t n) = 0;
  // Opens by the name's suffix (.gz, .zst, else plain).
  static std::unique_ptr<ByteStream> open(const std::string& path);
};

// The documents of one file of a source, in order.
class DocumentReader {
 public:
  DocumentReader(const std::string& path, const DataSource& source);
  ~DocumentReader();
  // False at the end of the file.
  bool next(Document& doc);

 private:
  bool next_line(std::string& line);
  void parse_record(const std::string& line, Document& doc) const;

  std::string path_;
  const DataSource* source_;
  std::unique_ptr<ByteStream> in_;
  bool jsonl_ = false, done_ = false;
  int64_t line_no_ = 0;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
};

// True when the name (after .gz / .zst) says JSON Lines.
bool is_jsonl_path(const std::string& path);

}  // namespace graft
