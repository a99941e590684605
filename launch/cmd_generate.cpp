// `graft generate --checkpoint C | --hf DIR  --prompt TEXT | --prompts FILE | --prompt-ids 1,2,3
//  [--device cpu|cuda|cuda:N] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
//  [--seed S] [--no-cache]`:
// continues prompts with a KV cache (on the model's device), greedy unless a temperature is
// given, each stopping at an end-of-sequence id (the config's eos_token_id and the tokenizer's).
// --prompts FILE holds one prompt per line, generated together as one batch (CausalLM::
// generate_batch). For each prompt, in order, prints the prompt followed by the new text (when a
// tokenizer is known) and a line "ids: " with the token ids of prompt + continuation.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "framework/core/device.h"
#include "framework/core/error.h"
#include "framework/model/hf_loader.h"
#include "framework/train/checkpoint_model.h"
#include "launch/command.h"
#include "parallel/launch.h"
#include "parallel/parallel_state.h"

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

// Lines of `path`, one prompt each (a trailing '\r' dropped).
std::vector<std::string> read_prompt_lines(const std::string& path) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), "--prompts ", path, ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  GRAFT_INPUT_CHECK(!lines.empty(), "--prompts ", path, ": no prompts (expected one per line)");
  return lines;
}

std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  if (tok.bos_id() >= 0 && tok.spec() != "byte") ids.push_back(tok.bos_id());
  if (tok.spec() == "byte") ids.push_back(tok.eos_id());  // documents start after EOS
  for (int64_t id : tok.encode(text)) ids.push_back(id);
  return ids;
}

int run_generate(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("checkpoint", po::value<std::string>(),
                     "native checkpoint (or checkpoint.dir)")("hf", po::value<std::string>(),
                                                              "Hugging Face checkpoint folder")(
      "prompt", po::value<std::string>(), "prompt text (needs the model's tokenizer)")(
      "prompts", po::value<std::string>(), "file of prompts, one per line, generated as a batch")(
      "prompt-ids", po::value<std::string>(), "prompt token ids, comma-separated")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu, cuda or cuda:N")(
      "max-new-tokens", po::value<int64_t>()->default_value(32), "tokens to generate")(
      "temperature", po::value<double>()->default_value(0.0), "0 = greedy")(
      "top-k", po::value<int64_t>()->default_value(0), "0 = off")(
      "top-p", po::value<double>()->default_value(1.0), "nucleus sampling mass")(
      "seed", po::value<uint64_t>()->default_value(0), "sampling seed")(
      "no-cache", po::bool_switch(), "recompute the whole sequence per token (no KV cache)")(
      "tp", po::value<int64_t>()->default_value(1),
      "tensor-parallel size (under mpirun -np N: N; native checkpoints)");
  auto vm = parse_options("generate",
                          "--checkpoint C|--hf DIR --prompt TEXT|--prompts FILE|--prompt-ids "
                          "1,2,3 [--device cuda] [--max-new-tokens N]",
                          desc, args);
  if (!vm) return 0;
  GRAFT_INPUT_CHECK(vm->count("checkpoint") + vm->count("hf") == 1,
                    "expected exactly one of --checkpoint or --hf");
  GRAFT_INPUT_CHECK(vm->count("prompt") + vm->count("prompts") + vm->count("prompt-ids") == 1,
                    "expected exactly one of --prompt, --prompts or --prompt-ids");
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
  const Device device = parse_device((*vm)["device"].as<std::string>(), "--device");
  if (!device.is_cpu()) device_backend();  // InputError now when there is no GPU

  // Tensor parallelism: every rank holds its slice and samples the same tokens from the
  // gathered logits; rank 0 prints.
  const int64_t tp = (*vm)["tp"].as<int64_t>();
  const WorldInfo& world = world_info();
  std::shared_ptr<const ParallelGroups> groups;
  if (tp > 1) {
    GRAFT_INPUT_CHECK(tp == world.size, "--tp ", tp,
                      ": generate runs tensor-parallel over the "
                      "whole world, which has ",
                      world.size, " ranks (run it under mpirun -np ", tp, ")");
    GRAFT_INPUT_CHECK(vm->count("checkpoint"),
                      "--tp: tensor-parallel generation reads a native checkpoint (--checkpoint)");
    ParallelConfig layout;
    layout.tp = tp;
    // CUDA: the MPI-staged backend (ranks may share a GPU; decoding moves little data).
    layout.backend = device.is_cpu() ? "auto" : "mpi";
    groups = make_parallel_groups(layout, world, device, "--tp");
  }
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<Tokenizer> tok;
  if (vm->count("checkpoint")) {
    const std::string ckpt = resolve_checkpoint((*vm)["checkpoint"].as<std::string>());
    model = load_checkpoint_model(ckpt, device, false, groups);
    tok = load_checkpoint_tokenizer(ckpt);
  } else {
    const std::string dir = (*vm)["hf"].as<std::string>();
    HfLoadOptions lo;
    lo.device = device;
    model = load_hf_model(dir, lo);
    if (std::filesystem::is_regular_file(dir + "/tokenizer.json"))
      tok = make_tokenizer(dir + "/tokenizer.json");
  }
  std::vector<std::string> texts;  // printed before each continuation ("" for --prompt-ids)
  std::vector<std::vector<int64_t>> prompts;
  if (vm->count("prompt-ids")) {
    prompts.push_back(parse_ids((*vm)["prompt-ids"].as<std::string>()));
    texts.emplace_back();
  } else {
    const char* flag = vm->count("prompt") ? "--prompt" : "--prompts";
    GRAFT_INPUT_CHECK(
        tok != nullptr, flag,
        " needs a tokenizer; the checkpoint has no tokenizer.json (use --prompt-ids)");
    texts = vm->count("prompt") ? std::vector<std::string>{(*vm)["prompt"].as<std::string>()}
                                : read_prompt_lines((*vm)["prompts"].as<std::string>());
    for (size_t i = 0; i < texts.size(); ++i) {
      prompts.push_back(encode_prompt(*tok, texts[i]));
      GRAFT_INPUT_CHECK(!prompts.back().empty(), flag, ": prompt ", i + 1, " encodes to no tokens");
    }
  }
  for (const auto& p : prompts)
    for (int64_t id : p)
      GRAFT_INPUT_CHECK(id < model->config().vocab_size, "prompt token ", id,
                        " is outside the vocabulary (", model->config().vocab_size, ")");
  g.stop_ids = model->config().eos_token_ids;
  if (tok) g.stop_ids.push_back(tok->eos_id());
  const std::vector<std::vector<int64_t>> outs = model->generate_batch(prompts, g);
  if (world.rank != 0) return 0;
  for (size_t r = 0; r < outs.size(); ++r) {
    const std::vector<int64_t>& out = outs[r];
    if (tok) {
      std::vector<int64_t> fresh(out.begin() + static_cast<std::ptrdiff_t>(prompts[r].size()),
                                 out.end());
      std::cout << texts[r] << tok->decode(fresh) << "\n";  // may hold NUL bytes: not printf
    }
    std::string ids;
    for (size_t i = 0; i < out.size(); ++i) {
      if (i) ids += ',';
      ids += std::to_string(out[i]);
    }
    std::cout << "ids: " << ids << std::endl;
  }
  return 0;
}

RegisterCommand reg{"generate", "continue a prompt with a trained or HF model", run_generate};

}  // namespace
}  // namespace graft::launch
