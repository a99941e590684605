#include "layers/te/norm.h"

#include "framework/registry/registry.h"
#include "layers/te/te_common.h"

namespace graft::te {

std::unique_ptr<graft::Norm> make_norm(const NormConfig& c, NormType type) {
  const char* name = type == NormType::kRMSNorm ? "te.rmsnorm" : "te.layernorm";
  reject_if(c.sequence_parallel, name, "sequence_parallel", "true",
            "sequence parallelism is configured through parallel/");
  graft::NormConfig nc{c.hidden_size, type, c.eps, c.zero_centered_gamma, c.params_dtype, c.device};
  return std::make_unique<graft::Norm>(nc, name);
}

static Register<graft::Norm, NormConfig> reg_rms("te.rmsnorm", "norm", [](const NormConfig& c) {
  return make_norm(c, NormType::kRMSNorm);
});
static Register<graft::Norm, NormConfig> reg_ln("te.layernorm", "norm", [](const NormConfig& c) {
  return make_norm(c, NormType::kLayerNorm);
});

}  // namespace graft::te
