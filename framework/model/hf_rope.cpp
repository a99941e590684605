// RoPE settings from config.json: transformers 5.x "rope_parameters" {rope_theta, rope_type,
// factor, ...} or 4.x "rope_theta" + "rope_scaling" {rope_type | type, factor, ...}. Types
// default, linear and llama3 are implemented; any other type, or a key the type does not use
// (attention_factor, partial_rotary_factor != 1, ...), is an InputError naming the field.
#include <cmath>

#include "framework/core/error.h"
#include "framework/model/hf_config.h"

namespace graft {

using nlohmann::json;

namespace {

// Reads one rope dict (5.x rope_parameters or 4.x rope_scaling); `where` names it in errors.
void read_rope_dict(const HfConfigReader& r, const json& d, const std::string& where,
                    RopeConfig& rope, bool theta_allowed) {
  if (!d.is_object()) r.fail(where, str("= ", d.dump(), ", expected an object"));
  auto num = [&](const char* k) -> double {
    auto it = d.find(k);
    if (it == d.end() || !it->is_number())
      r.fail(str(where, ".", k),
             str("missing or not a number (required for rope_type \"", rope.type, "\")"));
    return it->get<double>();
  };
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    auto it = d.find(k);
    if (it != d.end() && !it->is_null()) {
      if (!it->is_string()) r.fail(str(where, ".", k), "expected a string");
      type = it->get<std::string>();
    }
  }
  if (type != "default" && type != "linear" && type != "llama3")
    r.fail(str(where, ".rope_type"),
           str("= \"", type, "\" is not supported (expected default, linear or llama3)"));
  rope.type = type;
  for (const auto& [k, v] : d.items()) {
    if (k == "rope_type" || k == "type") continue;
    if (k == "rope_theta" && theta_allowed) {
      if (!v.is_number()) r.fail(where + ".rope_theta", "expected a number");
      rope.theta = v.get<double>();
    } else if (k == "partial_rotary_factor") {
      if (!v.is_number() || v.get<double>() != 1.0)
        r.fail(where + "." + k, str("= ", v.dump(), " is not supported (partial rotary)"));
    } else if (type == "default" && k == "factor" && (v.is_null() || v == 1.0)) {
      // transformers writes factor 1.0 for default rope in some versions: no effect.
    } else if ((type == "linear" && k == "factor") ||
               (type == "llama3" &&
                (k == "factor" || k == "low_freq_factor" || k == "high_freq_factor" ||
                 k == "original_max_position_embeddings"))) {
      // read below
    } else {
      r.fail(where + "." + k,
             str("= ", v.dump(), " is not supported with rope_type \"", type, "\""));
    }
  }
  if (type == "linear" || type == "llama3") rope.factor = num("factor");
  if (type == "llama3") {
    rope.low_freq_factor = num("low_freq_factor");
    rope.high_freq_factor = num("high_freq_factor");
    double omp = num("original_max_position_embeddings");
    if (omp <= 0 || std::floor(omp) != omp)
      r.fail(where + ".original_max_position_embeddings", "expected a positive integer");
    rope.original_max_position_embeddings = static_cast<int64_t>(omp);
    if (rope.high_freq_factor <= rope.low_freq_factor)
      r.fail(where + ".high_freq_factor", "must exceed low_freq_factor");
  }
  if ((type == "linear" || type == "llama3") && rope.factor <= 0)
    r.fail(where + ".factor", "must be positive");
}

}  // namespace

RopeConfig parse_rope(HfConfigReader& r, double default_theta) {
  RopeConfig rope;
  rope.theta = r.get_double("rope_theta", default_theta);
  if (const json* p = r.get("rope_parameters")) {
    if (p->is_object() && p->contains("full_attention"))
      r.fail("rope_parameters", "per-layer-type rope parameters are not supported");
    read_rope_dict(r, *p, "rope_parameters", rope, true);
    if (r.get("rope_scaling")) r.fail("rope_scaling", "given together with rope_parameters");
  } else if (const json* s = r.get("rope_scaling")) {
    read_rope_dict(r, *s, "rope_scaling", rope, false);
  }
  if (!(rope.theta > 0)) r.fail("rope_theta", "must be positive");
  return rope;
}

}  // namespace graft
