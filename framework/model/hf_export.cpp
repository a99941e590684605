#include "framework/model/hf_export.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "framework/io/atomic_file.h"
#include "framework/io/hf_checkpoint.h"
#include "framework/model/weight_table.h"

namespace graft {
namespace {

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    default:
      return "float32";
  }
}

}  // namespace

nlohmann::json hf_config_for_export(const ModelConfig& c, DType dtype) {
  nlohmann::json j = c.hf_config.is_object() ? c.hf_config : nlohmann::json::object();
  if (!c.hf_config.is_object()) {
    // Written from the ModelConfig: the fields parse_common reads.
    const DecoderConfig& d = c.decoder;
    j["intermediate_size"] = d.ffn_hidden_size;
    j["num_attention_heads"] = d.num_attention_heads;
    j["num_key_value_heads"] = d.num_kv_heads;
    j["head_dim"] = d.head_dim;
    j["rms_norm_eps"] = d.norm_eps;
    j["hidden_act"] = d.activation == "geglu"   ? "gelu_pytorch_tanh"
                      : d.activation == "reglu" ? "relu"
                                                : "silu";
    nlohmann::json rope = {{"rope_theta", d.rope.theta}, {"rope_type", d.rope.type}};
    if (d.rope.type == "linear" || d.rope.type == "llama3") rope["factor"] = d.rope.factor;
    if (d.rope.type == "llama3") {
      rope["low_freq_factor"] = d.rope.low_freq_factor;
      rope["high_freq_factor"] = d.rope.high_freq_factor;
      rope["original_max_position_embeddings"] = d.rope.original_max_position_embeddings;
    }
    j["rope_parameters"] = rope;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["initializer_range"] = c.initializer_range;
    if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
    if (!c.eos_token_ids.empty())
      j["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::json(c.eos_token_ids[0])
                                                      : nlohmann::json(c.eos_token_ids);
  }
  j["model_type"] = c.arch;
  if (!c.hf_architecture.empty()) j["architectures"] = {c.hf_architecture};
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["dtype"] = torch_dtype_name(dtype);
  if (j.contains("torch_dtype")) j["torch_dtype"] = torch_dtype_name(dtype);
  return j;
}

void export_hf_checkpoint(CausalLM& model, const std::string& dir, const HfExportOptions& opt) {
  HfGather gather(model, HfExportSource::kWeights, opt.dtype, opt.groups);
  ProcessGroup& world = *(opt.groups ? opt.groups : model.context().groups)->world;
  // The folder is made by rank 0; every rank learns whether that worked before the gathers.
  std::string failure;
  if (gather.root()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) failure = str(dir, ": cannot create the export folder: ", ec.message());
  }
  if (world.size() > 1 && world.all_reduce_scalar(failure.empty() ? 0 : 1, ReduceOp::kMax) > 0)
    throw InputError(failure.empty() ? str(dir, ": rank 0 cannot create the export folder")
                                     : failure);
  if (!failure.empty()) throw InputError(failure);
  std::vector<TensorMeta> metas;
  for (const std::string& n : gather.table().hf_names)
    metas.push_back({n, gather.table().hf_shapes.at(n), opt.dtype});
  write_hf_shards_streaming(
      dir, metas, [&](size_t i) { return gather.gather(metas[i].name); }, opt.max_shard_bytes,
      gather.root());
  if (!gather.root()) return;
  io::write_file_atomic(dir + "/config.json",
                        hf_config_for_export(model.config(), opt.dtype).dump(2) + "\n");
  const ModelConfig& c = model.config();
  if (c.bos_token_id >= 0 || !c.eos_token_ids.empty()) {
    nlohmann::json g = {{"_from_model_config", true}};
    if (c.bos_token_id >= 0) g["bos_token_id"] = c.bos_token_id;
    if (!c.eos_token_ids.empty())
      g["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::json(c.eos_token_ids[0])
                                                      : nlohmann::json(c.eos_token_ids);
    io::write_file_atomic(dir + "/generation_config.json", g.dump(2) + "\n");
  }
}

}  // namespace graft
