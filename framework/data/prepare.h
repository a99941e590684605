// Turning data sources into a token dataset folder (see token_shard.h for the format).
//
// Streaming: documents are read a chunk at a time (sources.h), tokenized by a pool of threads
// (one tokenizer each; results appended in input order, so the output does not depend on the
// thread count) and written as shards fill; memory is bounded by the chunk and one shard. Each
// document is [BOS] tokens EOS. Mixture weights are applied here (data_config.h). Progress
// (documents, tokens, MB/s) is printed every few seconds when a stream is given.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "framework/data/data_config.h"
#include "framework/data/tokenizer.h"

namespace graft {

struct PrepareStats {
  int64_t documents = 0;  // written (repeats of a weighted source included)
  int64_t bytes = 0;      // of input read
  int64_t tokens = 0;
  int64_t shards = 0;
  bool reused = false;  // the folder already held this preparation
};

struct PrepareOptions {
  int64_t shard_tokens = int64_t{1} << 26;
  int threads = 0;                   // 0 = hardware concurrency
  int64_t chunk_bytes = 8 << 20;     // input read per parallel tokenization round
  std::ostream* progress = nullptr;  // a line every progress_every_s seconds
  double progress_every_s = 5.0;
};

// Prepares `sources` with the tokenizer `tokenizer_spec` ("byte" or a tokenizer.json) into
// out_dir. Idempotent: when out_dir/meta.json records the same key (dataset_key), nothing is done
// (stats.reused). Otherwise the folder is written under a temporary name and renamed into place
// (an existing prepared folder is replaced; any other non-empty folder is refused). InputError
// naming the file (and line) when an input cannot be read.
PrepareStats prepare_sources(const std::vector<DataSource>& sources,
                             const std::string& tokenizer_spec, const std::string& out_dir,
                             const PrepareOptions& options = {});

// Each file is one text document (the plain-text case of prepare_sources), written in place.
PrepareStats prepare_dataset(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const std::string& out_dir, int64_t shard_tokens = 1 << 26);

// The cache key of a preparation: the format version, the tokenizer's hash, and per source its
// type, field, weight and each file's absolute path, size and mtime (ns).
std::string dataset_key(const std::vector<DataSource>& sources, const std::string& tokenizer_spec);

// "byte", or "fnv1a64:<16 hex digits>" of the tokenizer file's bytes.
std::string tokenizer_hash(const std::string& tokenizer_spec);

// The folder of tokens for a data section: `prepared` as is (its tokenizer checked against
// data.tokenizer: an InputError naming both when they differ), or the sources prepared on first
// use into cache_dir/<dataset_key>. Prepared into a temp folder and renamed, so concurrent or
// interrupted runs never see half a dataset.
std::string ensure_dataset(const DataConfig& c, bool* prepared_now = nullptr,
                           std::ostream* progress = nullptr);

// $XDG_CACHE_HOME/graft/data, else $HOME/.cache/graft/data, else ./.cache/graft/data.
std::string default_cache_dir();

}  // namespace graft
