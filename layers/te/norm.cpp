#include "layers/te/norm.h"

#include "framework/registry/registry.h"
#include "layers/te/te_common.h"

namespace graft::te {

std::unique_ptr<graft::Norm> make_norm(const NormConfig& c, NormType type,
                                       const BuildContext& ctx) {
  const char* name = type == NormType::kRMSNorm ? "te.rmsnorm" : "te.layernorm";
  reject_if(c.sequence_parallel && ctx.tp().size() == 1, name, "sequence_parallel", "true",
            "needs a tensor-parallel group of more than one rank (parallel.tp > 1)");
  graft::NormConfig nc{c.hidden_size, type, c.eps, c.zero_centered_gamma, c.params_dtype, c.device};
  nc.tp_partial_grad = c.sequence_parallel || c.tp_partial_grad;
  return std::make_unique<graft::Norm>(nc, ctx, name);
}

static Register<graft::Norm, NormConfig> reg_rms("te.rmsnorm", "norm",
                                                 [](const NormConfig& c, const BuildContext& ctx) {
                                                   return make_norm(c, NormType::kRMSNorm, ctx);
                                                 });
static Register<graft::Norm, NormConfig> reg_ln("te.layernorm", "norm",
                                                [](const NormConfig& c, const BuildContext& ctx) {
                                                  return make_norm(c, NormType::kLayerNorm, ctx);
                                                });

}  // namespace graft::te
