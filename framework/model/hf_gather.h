// Whole HF tensors from the local parameters of any layout, one at a time, on world rank 0.
//
// The weight table gives every HF tensor's blocks (weight_slices.h); a parameter split over a
// layout group (tp, cp) has its blocks spread over that group's ranks. gather(name) assembles one
// HF tensor on world rank 0: every other member of rank 0's group packs the blocks it holds into
// one buffer (converted to the export dtype) and sends it; rank 0 receives one peer at a time and
// places the blocks from that peer's ShardSpec (exchanged once, at construction), un-fusing
// q/k/v and gate/up and leaving vocabulary padding behind. Ranks outside rank 0's group (other
// data- or context-parallel replicas) take no part. Held at once on rank 0: the HF tensor, one
// peer's buffer and the local block copies, never a second whole tensor.
//
// Collective: every rank constructs the gather and calls gather() for the same names in the same
// order (write_hf_shards_streaming's order with write = false on the other ranks).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "framework/model/causal_lm.h"
#include "framework/model/weight_table.h"

namespace graft {

enum class HfExportSource { kWeights, kGrads };

class HfGather {
 public:
  // `groups` (may be null: the model's context) are the groups the parameters' specs refer to.
  HfGather(CausalLM& model, HfExportSource source, DType dtype,
           std::shared_ptr<const ParallelGroups> groups = nullptr);

  const WeightTable& table() const { return table_; }
  bool root() const { return root_; }  // world rank 0: gather() returns the tensors here
  DType dtype() const { return dtype_; }
  // The HF tensor `name` (table().hf_names) on the root, an undefined tensor elsewhere.
  Tensor gather(const std::string& name);
  // Most bytes gather() held at once on this rank (the tensor plus buffers).
  uint64_t peak_bytes() const { return peak_bytes_; }

 private:
  ProcessGroup* group_of(const HfParamEntry& e) const;
  Tensor source_of(const HfParamEntry& e) const;

  WeightTable table_;
  HfExportSource source_;
  DType dtype_;
  std::shared_ptr<const ParallelGroups> groups_;
  bool root_ = true;
  std::map<std::string, std::vector<size_t>> uses_;  // HF name -> the entries feeding it
  // Per entry split over a group: every member's spec and local shape, by group rank.
  std::vector<std::vector<ShardSpec>> peer_specs_;
  std::vector<std::vector<Shape>> peer_shapes_;
  uint64_t peak_bytes_ = 0;
};

// HF-named CPU tensors of the parameter values (or their gradients: graft parity compares them
// with transformers' gradients) in `dtype`. Gradients must be allocated for kGrads. Under a
// layout (collective, HfGather): the tensors on world rank 0, an empty list on the other ranks.
std::vector<std::pair<std::string, Tensor>> export_hf_tensors(
    CausalLM& model, HfExportSource source = HfExportSource::kWeights, DType dtype = DType::kF32,
    std::shared_ptr<const ParallelGroups> groups = nullptr);

}  // namespace graft
