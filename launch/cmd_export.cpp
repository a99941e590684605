// `graft export --checkpoint C --out DIR [--max-shard-size 5GB] [--dtype f32|bf16|f16]`: writes a
// native checkpoint's model as a Hugging Face checkpoint (config.json, sharded safetensors and
// index, and the checkpoint's tokenizer.json when it has one) that transformers and `graft parity`
// load. C may be a checkpoint folder or a
// checkpoint.dir (its newest complete checkpoint), written in any parallel layout. The weights
// come from the f32 master copy when the checkpoint has one (bf16 training), not from the
// rounded working copy.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/core/error.h"
#include "framework/io/atomic_file.h"
#include "framework/io/hf_checkpoint.h"
#include "framework/model/hf_export.h"
#include "framework/train/checkpoint.h"
#include "framework/train/checkpoint_model.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run_export(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("checkpoint", po::value<std::string>()->required(),
                     "native checkpoint folder (or a checkpoint.dir: its newest)")(
      "out", po::value<std::string>()->required(), "output folder")(
      "max-shard-size", po::value<std::string>()->default_value("5GB"), "e.g. 5GB, 500MB")(
      "dtype", po::value<std::string>()->default_value("f32"), "f32, bf16 or f16");
  auto vm = parse_options("export", "--checkpoint C --out DIR [--max-shard-size 5GB]", desc, args);
  if (!vm) return 0;
  HfExportOptions opt;
  opt.max_shard_bytes =
      parse_byte_size((*vm)["max-shard-size"].as<std::string>(), "--max-shard-size");
  const std::string dt = (*vm)["dtype"].as<std::string>();
  auto dtype = dtype_from_name(dt);
  GRAFT_INPUT_CHECK(
      dtype && (*dtype == DType::kF32 || *dtype == DType::kBF16 || *dtype == DType::kF16),
      "--dtype ", dt, ": expected f32, bf16 or f16");
  opt.dtype = *dtype;
  const std::string ckpt = resolve_checkpoint((*vm)["checkpoint"].as<std::string>());
  auto model = load_checkpoint_model(ckpt, Device::cpu(), /*prefer_master=*/true);
  const std::string out = (*vm)["out"].as<std::string>();
  export_hf_checkpoint(*model, out, opt);
  // The tokenizer travels with the model (transformers' AutoTokenizer reads it from the folder).
  if (std::filesystem::is_regular_file(ckpt + "/tokenizer.json")) {
    std::ifstream in(ckpt + "/tokenizer.json", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    GRAFT_INPUT_CHECK(in.good() || in.eof(), ckpt, "/tokenizer.json: cannot read");
    io::write_file_atomic(out + "/tokenizer.json", ss.str());
  }
  std::printf("exported %s -> %s\n", ckpt.c_str(), out.c_str());
  return 0;
}

RegisterCommand reg{"export", "write a native checkpoint as a Hugging Face checkpoint", run_export};

}  // namespace
}  // namespace graft::launch
