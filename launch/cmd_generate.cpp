// `graft generate --checkpoint C | --hf DIR  --prompt TEXT | --prompt-ids 1,2,3
//  [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--no-cache]`:
// continues a prompt with a KV cache, greedy unless a temperature is given. Prints the new text
// (when a tokenizer is known) and the token ids of prompt + continuation.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "framework/core/error.h"
#include "framework/model/hf_loader.h"
#include "framework/train/checkpoint_model.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GRAFT_INPUT_CHECK(used == item.size() && !item.empty() && v >= 0, "--prompt-ids ", s, ": '",
                      item, "' is not a non-negative integer");
    ids.push_back(v);
  }
  GRAFT_INPUT_CHECK(!ids.empty(), "--prompt-ids: empty list");
  return ids;
}

int run_generate(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("checkpoint", po::value<std::string>(),
                     "native checkpoint (or checkpoint.dir)")("hf", po::value<std::string>(),
                                                              "Hugging Face checkpoint folder")(
      "prompt", po::value<std::string>(), "prompt text (needs the model's tokenizer)")(
      "prompt-ids", po::value<std::string>(), "prompt token ids, comma-separated")(
      "max-new-tokens", po::value<int64_t>()->default_value(32), "tokens to generate")(
      "temperature", po::value<double>()->default_value(0.0), "0 = greedy")(
      "top-k", po::value<int64_t>()->default_value(0), "0 = off")(
      "top-p", po::value<double>()->default_value(1.0), "nucleus sampling mass")(
      "seed", po::value<uint64_t>()->default_value(0), "sampling seed")(
      "no-cache", po::bool_switch(), "recompute the whole sequence per token (no KV cache)");
  auto vm = parse_options("generate",
                          "--checkpoint C|--hf DIR --prompt TEXT|--prompt-ids 1,2,3 "
                          "[--max-new-tokens N]",
                          desc, args);
  if (!vm) return 0;
  GRAFT_INPUT_CHECK(vm->count("checkpoint") + vm->count("hf") == 1,
                    "expected exactly one of --checkpoint or --hf");
  GRAFT_INPUT_CHECK(vm->count("prompt") + vm->count("prompt-ids") == 1,
                    "expected exactly one of --prompt or --prompt-ids");
  GenerateOptions g;
  g.max_new_tokens = (*vm)["max-new-tokens"].as<int64_t>();
  g.temperature = (*vm)["temperature"].as<double>();
  g.top_k = (*vm)["top-k"].as<int64_t>();
  g.top_p = (*vm)["top-p"].as<double>();
  g.seed = (*vm)["seed"].as<uint64_t>();
  g.use_cache = !(*vm)["no-cache"].as<bool>();
  GRAFT_INPUT_CHECK(g.max_new_tokens > 0, "--max-new-tokens ", g.max_new_tokens, ": expected > 0");
  GRAFT_INPUT_CHECK(g.temperature >= 0, "--temperature ", g.temperature, ": expected >= 0");
  GRAFT_INPUT_CHECK(g.top_k >= 0, "--top-k ", g.top_k, ": expected >= 0");
  GRAFT_INPUT_CHECK(g.top_p > 0 && g.top_p <= 1, "--top-p ", g.top_p, ": expected in (0, 1]");

  std::unique_ptr<CausalLM> model;
  std::unique_ptr<Tokenizer> tok;
  if (vm->count("checkpoint")) {
    const std::string ckpt = resolve_checkpoint((*vm)["checkpoint"].as<std::string>());
    model = load_checkpoint_model(ckpt);
    tok = load_checkpoint_tokenizer(ckpt);
  } else {
    const std::string dir = (*vm)["hf"].as<std::string>();
    model = load_hf_model(dir);
    if (std::filesystem::is_regular_file(dir + "/tokenizer.json"))
      tok = make_tokenizer(dir + "/tokenizer.json");
  }
  std::vector<int64_t> prompt;
  if (vm->count("prompt")) {
    GRAFT_INPUT_CHECK(tok != nullptr,
                      "--prompt needs a tokenizer; the checkpoint has no "
                      "tokenizer.json (use --prompt-ids)");
    if (tok->bos_id() >= 0 && tok->spec() != "byte") prompt.push_back(tok->bos_id());
    if (tok->spec() == "byte") prompt.push_back(tok->eos_id());  // documents start after EOS
    for (int64_t id : tok->encode((*vm)["prompt"].as<std::string>())) prompt.push_back(id);
  } else {
    prompt = parse_ids((*vm)["prompt-ids"].as<std::string>());
  }
  for (int64_t id : prompt)
    GRAFT_INPUT_CHECK(id < model->config().vocab_size, "prompt token ", id,
                      " is outside the vocabulary (", model->config().vocab_size, ")");
  if (tok) g.stop_ids = {tok->eos_id()};
  std::vector<int64_t> out = model->generate(prompt, g);
  if (tok) {
    std::vector<int64_t> fresh(out.begin() + static_cast<std::ptrdiff_t>(prompt.size()), out.end());
    const std::string head = vm->count("prompt") ? (*vm)["prompt"].as<std::string>() : "";
    std::cout << head << tok->decode(fresh) << "\n";  // may hold NUL bytes: not printf
  }
  std::string ids;
  for (size_t i = 0; i < out.size(); ++i) {
    if (i) ids += ',';
    ids += std::to_string(out[i]);
  }
  std::cout << "ids: " << ids << std::endl;
  return 0;
}

RegisterCommand reg{"generate", "continue a prompt with a trained or HF model", run_generate};

}  // namespace
}  // namespace graft::launch
