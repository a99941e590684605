// "Did you mean ...?" for misspelt names (recipe keys, config fields).
//
// Distance is the Levenshtein edit distance (insert, delete, substitute: 1 each). A candidate is
// close enough when its distance is at most max(1, |word| / 3), which accepts one or two typos in
// a short key and rejects unrelated names of similar length.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace graft {

size_t edit_distance(const std::string& a, const std::string& b);

// The closest candidate (the first of equals, in the given order), or "" when none is close.
std::string closest_name(const std::string& word, const std::vector<std::string>& candidates);

// " (did you mean X?)" for the closest candidate, or "" when none is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace graft
