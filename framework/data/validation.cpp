#include "framework/data/validation.h"

#include <cmath>
#include <filesystem>

#include "framework/data/data_config.h"
#include "framework/recipe/recipe_node.h"

namespace graft {

ValidationConfig parse_validation_config(RecipeNode& n) {
  ValidationConfig c;
  c.fraction = n.get<double>("fraction", 0.0);
  c.path = n.get<std::string>("path", "");
  n.finish();
  if ((c.fraction != 0) == !c.path.empty())
    n.fail(c.path.empty() ? "fraction" : "path",
           "expected exactly one of data.validation.fraction (hold out part of the training "
           "data) or data.validation.path (a prepared folder or text globs)");
  if (c.path.empty() && !(c.fraction > 0 && c.fraction < 1))
    n.fail("fraction", str("= ", c.fraction, ", expected 0 < fraction < 1"));
  if (!c.path.empty() && !std::filesystem::is_directory(c.path)) {
    c.files = expand_glob(c.path);
    if (c.files.empty())
      n.fail("path", str("= '", c.path, "' is neither a prepared folder nor a glob of files"));
  }
  if (c.prepared() && !std::filesystem::is_regular_file(c.path + "/meta.json"))
    n.fail("path", str("= '", c.path, "' has no meta.json (write it with graft data prepare)"));
  return c;
}

std::vector<int64_t> held_out_windows(int64_t total, int64_t seq_len, double fraction) {
  std::vector<int64_t> out;
  const int64_t n = total / seq_len;
  for (int64_t w = 0; w < n; ++w) {
    const auto before = static_cast<int64_t>(std::floor(static_cast<double>(w) * fraction));
    const auto after = static_cast<int64_t>(std::floor(static_cast<double>(w + 1) * fraction));
    if (after > before) out.push_back(w * seq_len);
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> held_out_ranges(int64_t total, int64_t seq_len,
                                                         double fraction) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t begin : held_out_windows(total, seq_len, fraction)) {
    if (!out.empty() && out.back().second == begin)
      out.back().second += seq_len;
    else
      out.emplace_back(begin, begin + seq_len);
  }
  return out;
}

}  // namespace graft
