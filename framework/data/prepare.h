// Turning text files into a token dataset folder (see token_shard.h for the format).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/data/data_config.h"
#include "framework/data/tokenizer.h"

namespace graft {

struct PrepareStats {
  int64_t documents = 0;
  int64_t bytes = 0;
  int64_t tokens = 0;
  int64_t shards = 0;
};

// Each file is one document, followed by the tokenizer's EOS. Shards hold at most
// shard_tokens tokens; meta.json is written last, so a folder without it is incomplete.
// InputError naming the file when an input cannot be read.
PrepareStats prepare_dataset(const std::vector<std::string>& files, const Tokenizer& tokenizer,
                             const std::string& out_dir, int64_t shard_tokens = 1 << 26);

// The folder of tokens for a data section: `prepared` as is, or `text` prepared on first use into
// cache_dir/<key> (key: the path, size and mtime of each file and of the tokenizer file). Prepared
// into a temp folder and renamed, so concurrent or interrupted runs never see half a dataset.
std::string ensure_dataset(const DataConfig& c, bool* prepared_now = nullptr);

// $XDG_CACHE_HOME/graft/data, else $HOME/.cache/graft/data, else ./.cache/graft/data.
std::string default_cache_dir();

}  // namespace graft
