// `graft data prepare --input FILES... --tokenizer byte|PATH/tokenizer.json --out DIR`: tokenizes
// text files (one document each, EOS-separated) into token shards + meta.json (format in
// framework/data/token_shard.h), for a recipe's `data.prepared: DIR`.
#include <cstdio>

#include "framework/core/error.h"
#include "framework/data/data_config.h"
#include "framework/data/prepare.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run_data(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("action", po::value<std::string>()->required(), "prepare")(
      "input", po::value<std::vector<std::string>>()->multitoken()->required(),
      "text files or glob patterns, one document each")(
      "tokenizer", po::value<std::string>()->default_value("byte"),
      "byte, or a Hugging Face tokenizer.json (byte-level BPE)")(
      "out", po::value<std::string>()->required(), "output folder")(
      "shard-tokens", po::value<int64_t>()->default_value(int64_t{1} << 26),
      "maximum tokens per shard");
  po::positional_options_description pos;
  pos.add("action", 1);
  auto vm =
      parse_options("data", "prepare --input FILES... --tokenizer byte|tokenizer.json --out DIR",
                    desc, args, &pos);
  if (!vm) return 0;
  const std::string action = (*vm)["action"].as<std::string>();
  GRAFT_INPUT_CHECK(action == "prepare", "graft data: unknown action '", action,
                    "', expected prepare");
  std::vector<std::string> files;
  for (const auto& p : (*vm)["input"].as<std::vector<std::string>>()) {
    auto m = expand_glob(p);
    GRAFT_INPUT_CHECK(!m.empty(), "--input ", p, ": no such file");
    files.insert(files.end(), m.begin(), m.end());
  }
  const int64_t shard_tokens = (*vm)["shard-tokens"].as<int64_t>();
  GRAFT_INPUT_CHECK(shard_tokens > 0, "--shard-tokens ", shard_tokens, ": expected > 0");
  auto tok = make_tokenizer((*vm)["tokenizer"].as<std::string>());
  const std::string out = (*vm)["out"].as<std::string>();
  PrepareStats st = prepare_dataset(files, *tok, out, shard_tokens);
  std::printf("prepared %lld documents, %lld bytes -> %lld tokens in %lld shards under %s\n",
              static_cast<long long>(st.documents), static_cast<long long>(st.bytes),
              static_cast<long long>(st.tokens), static_cast<long long>(st.shards), out.c_str());
  return 0;
}

RegisterCommand reg{"data", "prepare token shards from text (data prepare)", run_data};

}  // namespace
}  // namespace graft::launch
