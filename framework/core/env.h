// Environment switches (GRAFT_GEMM_TUNE, GRAFT_FP8_FUSED_ACT_BWD, GRAFT_PROFILE_SHAPES, ...): one
// parser, so a value outside the documented set is an InputError naming the variable instead of
// silently meaning "off".
#pragma once

#include <initializer_list>
#include <string_view>

namespace graft {

// The index in `values` of the variable's value; unset or "" gives 0 (list the default first).
// Any other value throws InputError: "environment: NAME = 'v' (expected a, b or c)".
int env_choice(const char* name, std::initializer_list<std::string_view> values);

// env_choice(name, {"0", "1"}) == 1.
inline bool env_flag(const char* name) { return env_choice(name, {"0", "1"}) == 1; }

}  // namespace graft
