// Context parallelism: how a batch is split across the cp group (ring attention's layout,
// layers/context_parallel/ring_attention.h).
//
// A row of S tokens is cut into 2·cp chunks of c = S / (2·cp); cp rank r keeps chunks r and
// 2·cp−1−r, in that order (load balance under a causal mask: every rank holds one early and one
// late chunk). Every tensor of the batch that is indexed by position — input ids, targets,
// rotary positions, document ids, the key padding mask — is reordered the same way, so RoPE sees
// each token's true position and the masks stay per token. Every cp rank receives the whole
// batch (the sampler hands the ranks of one data-parallel replica the same rows) and keeps its
// share; the loss of each rank is its targets' sum over the whole batch's divisor, summed over
// cp. S not divisible by 2·cp is an InputError.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/model/lm_inputs.h"
#include "parallel/process_group.h"

namespace graft {

// InputError naming `what` unless seq is a positive multiple of 2·cp.
void check_cp_seq(int64_t seq, int cp, const char* what);

// The sequence positions cp rank `rank` of `cp` holds, in its row order.
std::vector<int64_t> cp_rows_of_rank(int64_t seq, int rank, int cp);

// Columns `cols` of a [B, S] tensor (any dtype, any device) as a new [B, cols.size()] tensor on
// the same device.
Tensor take_columns(const Tensor& t, const std::vector<int64_t>& cols);

// This rank's share of a batch (see the top): positions default to 0 .. S−1 before the split;
// num_targets becomes this rank's count; loss_divisor, when 0, the whole batch's count (>= 1), so
// the ranks' losses add up to the single-process loss.
LmInputs cp_split(const LmInputs& in, int rank, int cp);

// The whole-sequence [B, S, X] tensor from every cp rank's contiguous [B, S/cp, X] share
// (all-gather over `cp`, rows put back in sequence order). Collective.
Tensor cp_gather_rows(const Tensor& local, ProcessGroup& cp);

}  // namespace graft
