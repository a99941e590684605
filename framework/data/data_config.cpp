#include "framework/data/data_config.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "framework/recipe/recipe_node.h"

namespace graft {

std::vector<std::string> expand_glob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      if (std::filesystem::is_regular_file(g.gl_pathv[i])) out.emplace_back(g.gl_pathv[i]);
    }
  }
  ::globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

DataConfig parse_data_config(RecipeNode& n) {
  DataConfig c;
  c.text = n.get<std::vector<std::string>>("text", {});
  for (RecipeNode& s : n.children("sources")) {
    DataSource src;
    src.path = s.require<std::string>("path");
    src.type = s.get<std::string>("type", "text");
    src.field = s.get<std::string>("field", "text");
    src.weight = s.get<double>("weight", 1.0);
    s.finish();
    if (src.type != "text" && src.type != "sft")
      s.fail("type", str("= '", src.type, "': expected text or sft"));
    if (!(src.weight > 0)) s.fail("weight", str("= ", src.weight, ": expected > 0"));
    if (src.field.empty()) s.fail("field", "must name a JSONL field");
    src.files = expand_glob(src.path);
    if (src.files.empty()) s.fail("path", str("= '", src.path, "' matches no readable file"));
    c.sources.push_back(std::move(src));
  }
  c.prepared = n.get<std::string>("prepared", "");
  c.tokenizer = n.get<std::string>("tokenizer", "byte");
  c.cache_dir = n.get<std::string>("cache_dir", "");
  c.seq_len = require_positive(n, "seq_len", n.get<int64_t>("seq_len", 256));
  c.seed = n.get<int64_t>("seed", 1234);
  c.document_mask = n.get<bool>("document_mask", false);
  if (n.has("validation")) {  // only when given: recipes without it keep their config hash
    RecipeNode v = n.child("validation");
    c.validation = parse_validation_config(v);
  }
  n.finish();
  const int given = !c.text.empty() + !c.sources.empty() + !c.prepared.empty();
  if (given != 1)
    n.fail(!c.sources.empty() ? "sources"
           : c.text.empty()   ? "prepared"
                              : "text",
           "expected exactly one of data.text (text globs), data.sources (a mixture) or "
           "data.prepared (a folder from `graft data prepare`)");
  for (const auto& pattern : c.text) {
    DataSource src;
    src.path = pattern;
    src.files = expand_glob(pattern);
    if (src.files.empty()) n.fail("text", str("= '", pattern, "' matches no readable file"));
    c.sources.push_back(std::move(src));
  }
  for (const auto& s : c.sources) c.files.insert(c.files.end(), s.files.begin(), s.files.end());
  if (!c.prepared.empty() && !std::filesystem::is_regular_file(c.prepared + "/meta.json"))
    n.fail("prepared",
           str("= '", c.prepared, "' has no meta.json (write it with graft data prepare)"));
  if (c.tokenizer != "byte" && !std::filesystem::is_regular_file(c.tokenizer))
    n.fail("tokenizer",
           str("= '", c.tokenizer, "': no such file (expected byte or a tokenizer.json)"));
  return c;
}

}  // namespace graft
