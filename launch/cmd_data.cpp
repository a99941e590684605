// `graft data prepare --input PATTERN... [--type text|sft] [--field text] [--weight W...]
//  --tokenizer byte|PATH/tokenizer.json --out DIR`: tokenizes the inputs (plain text, JSONL,
// .gz / .zst; one source per --input, see framework/data/sources.h) into token shards + meta.json
// (format in framework/data/token_shard.h), for a recipe's `data.prepared: DIR`. Re-running with
// the same inputs and tokenizer reuses DIR. Progress goes to stderr every few seconds.
#include <cstdio>
#include <iostream>

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
      "files or glob patterns: .txt (one document each), .jsonl, optionally .gz / .zst")(
      "type", po::value<std::string>()->default_value("text"),
      "text, or sft (prompt/completion or messages records)")(
      "field", po::value<std::string>()->default_value("text"), "JSONL field of text records")(
      "weight", po::value<std::vector<double>>()->multitoken(),
      "mixture weight per --input (default 1 each)")(
      "tokenizer", po::value<std::string>()->default_value("byte"),
      "byte, or a Hugging Face tokenizer.json (byte-level BPE)")(
      "out", po::value<std::string>()->required(), "output folder")(
      "shard-tokens", po::value<int64_t>()->default_value(int64_t{1} << 26),
      "maximum tokens per shard")("threads", po::value<int>()->default_value(0),
                                  "tokenizer threads (0 = one per core)");
  po::positional_options_description pos;
  pos.add("action", 1);
  auto vm = parse_options(
      "data",
      "prepare --input FILES... [--type text|sft] --tokenizer byte|tokenizer.json --out DIR", desc,
      args, &pos);
  if (!vm) return 0;
  const std::string action = (*vm)["action"].as<std::string>();
  GRAFT_INPUT_CHECK(action == "prepare", "graft data: unknown action '", action,
                    "', expected prepare");
  const auto inputs = (*vm)["input"].as<std::vector<std::string>>();
  std::vector<double> weights(inputs.size(), 1.0);
  if (vm->count("weight")) {
    weights = (*vm)["weight"].as<std::vector<double>>();
    GRAFT_INPUT_CHECK(weights.size() == inputs.size(), "--weight: ", weights.size(),
                      " weights for ", inputs.size(), " --input patterns (give one per pattern)");
  }
  const std::string type = (*vm)["type"].as<std::string>();
  GRAFT_INPUT_CHECK(type == "text" || type == "sft", "--type ", type, ": expected text or sft");
  std::vector<DataSource> sources;
  for (size_t i = 0; i < inputs.size(); ++i) {
    DataSource s;
    s.path = inputs[i];
    s.files = expand_glob(inputs[i]);
    GRAFT_INPUT_CHECK(!s.files.empty(), "--input ", inputs[i], ": no such file");
    s.type = type;
    s.field = (*vm)["field"].as<std::string>();
    s.weight = weights[i];
    GRAFT_INPUT_CHECK(s.weight > 0, "--weight ", s.weight, ": expected > 0");
    sources.push_back(std::move(s));
  }
  PrepareOptions opt;
  opt.shard_tokens = (*vm)["shard-tokens"].as<int64_t>();
  GRAFT_INPUT_CHECK(opt.shard_tokens > 0, "--shard-tokens ", opt.shard_tokens, ": expected > 0");
  opt.threads = (*vm)["threads"].as<int>();
  opt.progress = &std::cerr;
  const std::string out = (*vm)["out"].as<std::string>();
  PrepareStats st = prepare_sources(sources, (*vm)["tokenizer"].as<std::string>(), out, opt);
  if (st.reused) {
    std::printf("already prepared from the same inputs and tokenizer: %lld tokens under %s\n",
                static_cast<long long>(st.tokens), out.c_str());
    return 0;
  }
  std::printf("prepared %lld documents, %lld bytes -> %lld tokens in %lld shards under %s\n",
              static_cast<long long>(st.documents), static_cast<long long>(st.bytes),
              static_cast<long long>(st.tokens), static_cast<long long>(st.shards), out.c_str());
  return 0;
}

RegisterCommand reg{"data", "prepare token shards from text or JSONL (data prepare)", run_data};

}  // namespace
}  // namespace graft::launch
