// cuDNN fused flash attention (through the cuDNN frontend's graph API) behind attn_fwd/attn_bwd.
//
// Available when the build found the frontend headers (GRAFT_HAVE_CUDNN_FE, fetched by
// scripts/fetch-cudnn-frontend.sh into .cache/) and libcudnn. It takes bf16/f16 q/k/v in bshd
// layout with any b/s/h strides (so fused-qkv views work), GQA/MQA, no mask or causal masks
// whose diagonal is top-left (q_offset = 0, Sq = Skv) or bottom-right (q_offset = Skv - Sq), and
// a left sliding window on a causal mask. Everything else (f32, padding or arbitrary masks,
// other q_offsets, head_dim not a multiple of 8 or > 256, and what cuDNN's own support check
// refuses) is rejected with a reason, and the caller falls back to the unfused kernels.
#pragma once

#include <string>

#include "kernels/attention.h"

namespace graft::cuda {

// "" when cuDNN attention can run this problem, else why not.
std::string cudnn_attn_reject_reason(const AttnShape& shape, DType dtype);
// Both return false (and leave nothing written) when cuDNN cannot build a plan for the problem;
// `why` then says why.
bool cudnn_attn_fwd(const AttnFwdParams& p, std::string* why);
bool cudnn_attn_bwd(const AttnBwdParams& p, std::string* why);

}  // namespace graft::cuda
