// Rebuilding a model (and its tokenizer) from a native checkpoint, for generate and export.
#pragma once

#include <memory>
#include <string>

#include "framework/data/tokenizer.h"
#include "framework/model/causal_lm.h"

namespace graft {

// A checkpoint folder as is, or a checkpoint.dir: its newest complete checkpoint. InputError
// naming the path when neither.
std::string resolve_checkpoint(const std::string& path);

// Builds the model from config.json with the layer set, overrides and precision.residual of the
// checkpoint's recipe.yaml (plugins loaded) and loads its weights whatever layout wrote them: the
// working copy (model/<name>, what training computed with: generate), or with prefer_master the
// f32 master weights where the checkpoint has them (export).
// With `groups` (a layout of several ranks; collective over them) each rank builds and reads its
// slice of a tensor-parallel model.
std::unique_ptr<CausalLM> load_checkpoint_model(
    const std::string& checkpoint, Device device = Device::cpu(), bool prefer_master = false,
    std::shared_ptr<const ParallelGroups> groups = nullptr);

// The checkpoint's tokenizer: byte, or its tokenizer.json copy.
std::unique_ptr<Tokenizer> load_checkpoint_tokenizer(const std::string& checkpoint);

}  // namespace graft
