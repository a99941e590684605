#include "framework/recipe/recipe_node.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "framework/core/suggest.h"

namespace graft {

RecipeNode::RecipeNode(YAML::Node node, YAML::Node resolved, std::string path,
                       std::shared_ptr<const RecipeSource> source)
    : node_(std::move(node)),
      resolved_(std::move(resolved)),
      path_(std::move(path)),
      source_(std::move(source)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    const int line = node_.Mark().line;
    throw InputError(str(source_->file, line >= 0 ? str(":", line + 1) : "", ": ",
                         path_.empty() ? "the recipe" : path_, " must be a mapping of keys"));
  }
}

std::string RecipeNode::full(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

YAML::Node RecipeNode::lookup(const std::string& key) const {
  if (!node_.IsDefined() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& c = node_;
  return c[key];
}

bool RecipeNode::has(const std::string& key) const {
  YAML::Node n = lookup(key);
  return n.IsDefined() && !n.IsNull();
}

std::string RecipeNode::where(const std::string& key) const {
  const std::string p = full(key);
  // The longest --set path that covers p names the origin.
  for (std::string q = p;;) {
    auto it = source_->set_args.find(q);
    if (it != source_->set_args.end()) return str(it->second, ": ", p);
    const size_t dot = q.rfind('.');
    if (dot == std::string::npos) break;
    q = q.substr(0, dot);
  }
  // A section that only --set created ("--set foo.bar=1" for an unknown "foo").
  for (const auto& [k, arg] : source_->set_args)
    if (k.rfind(p + ".", 0) == 0) return str(arg, ": ", p);
  int line = -1;
  YAML::Node n = lookup(key);
  if (n.IsDefined()) line = n.Mark().line;
  if (line < 0 && node_.IsDefined()) line = node_.Mark().line;
  return str(source_->file, line >= 0 ? str(":", line + 1) : "", ": ", p);
}

void RecipeNode::fail(const std::string& key, const std::string& what) const {
  throw InputError(str(where(key), " ", what));
}

namespace {
std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "null";
}
}  // namespace

template <class T>
T RecipeNode::convert(const std::string& key, const YAML::Node& n) const {
  auto msg = [&](const char* expected) {
    return str("= ", scalar_text(n), ", expected ", expected);
  };
  if constexpr (std::is_same_v<T, std::vector<std::string>> ||
                std::is_same_v<T, std::vector<double>>) {
    using E = typename T::value_type;
    if (!n.IsSequence()) fail(key, msg("a list"));
    T out;
    for (const auto& e : n) {
      if (!e.IsScalar()) fail(key, msg("a list of scalars"));
      try {
        out.push_back(e.as<E>());
      } catch (const YAML::Exception&) {
        fail(key, msg(std::is_same_v<E, double> ? "a list of numbers" : "a list of strings"));
      }
    }
    return out;
  } else {
    if (!n.IsScalar()) {
      if constexpr (std::is_same_v<T, bool>) fail(key, msg("true or false"));
      if constexpr (std::is_same_v<T, int64_t>) fail(key, msg("an integer"));
      if constexpr (std::is_same_v<T, double>) fail(key, msg("a number"));
      fail(key, msg("a string"));
    }
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      if constexpr (std::is_same_v<T, bool>) fail(key, msg("true or false"));
      if constexpr (std::is_same_v<T, int64_t>) fail(key, msg("an integer"));
      fail(key, msg("a number"));
    }
  }
}

namespace {
// Shortest text that reads back as the same double (0.003, not 0.0030000000000000001).
std::string shortest(double v) {
  char buf[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}
template <class T>
YAML::Node to_node(const T& v) {
  return YAML::Node(v);
}
template <>
YAML::Node to_node<double>(const double& v) {
  return YAML::Node(shortest(v));
}
template <>
YAML::Node to_node<std::vector<double>>(const std::vector<double>& v) {
  YAML::Node n(YAML::NodeType::Sequence);
  for (double d : v) n.push_back(shortest(d));
  n.SetStyle(YAML::EmitterStyle::Flow);
  return n;
}
}  // namespace

template <class T>
T RecipeNode::get(const std::string& key, const T& def) {
  read_.insert(key);
  YAML::Node n = lookup(key);
  T v = (n.IsDefined() && !n.IsNull()) ? convert<T>(key, n) : def;
  resolved_[key] = to_node(v);
  return v;
}

template <class T>
T RecipeNode::require(const std::string& key) {
  read_.insert(key);
  YAML::Node n = lookup(key);
  if (!n.IsDefined() || n.IsNull()) fail(key, "is required but missing");
  T v = convert<T>(key, n);
  resolved_[key] = to_node(v);
  return v;
}

template bool RecipeNode::get<bool>(const std::string&, const bool&);
template int64_t RecipeNode::get<int64_t>(const std::string&, const int64_t&);
template double RecipeNode::get<double>(const std::string&, const double&);
template std::string RecipeNode::get<std::string>(const std::string&, const std::string&);
template std::vector<std::string> RecipeNode::get<std::vector<std::string>>(
    const std::string&, const std::vector<std::string>&);
template std::vector<double> RecipeNode::get<std::vector<double>>(const std::string&,
                                                                  const std::vector<double>&);
template bool RecipeNode::require<bool>(const std::string&);
template int64_t RecipeNode::require<int64_t>(const std::string&);
template double RecipeNode::require<double>(const std::string&);
template std::string RecipeNode::require<std::string>(const std::string&);

RecipeNode RecipeNode::child(const std::string& key) {
  read_.insert(key);
  YAML::Node n = lookup(key);
  YAML::Node r = resolved_[key];
  r = YAML::Node(YAML::NodeType::Map);
  return RecipeNode(n.IsDefined() && !n.IsNull() ? n : YAML::Node(YAML::NodeType::Map), r,
                    full(key), source_);
}

std::vector<RecipeNode> RecipeNode::children(const std::string& key) {
  read_.insert(key);
  YAML::Node n = lookup(key);
  std::vector<RecipeNode> out;
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) fail(key, "must be a list of mappings");
  YAML::Node r = resolved_[key];
  r = YAML::Node(YAML::NodeType::Sequence);
  for (size_t i = 0; i < n.size(); ++i) {
    YAML::Node ri(YAML::NodeType::Map);
    r.push_back(ri);
    out.emplace_back(n[i], r[i], str(full(key), "[", i, "]"), source_);
  }
  return out;
}

YAML::Node RecipeNode::raw(const std::string& key) {
  read_.insert(key);
  YAML::Node n = lookup(key);
  if (n.IsDefined() && !n.IsNull()) resolved_[key] = YAML::Clone(n);
  return n;
}

RecipeNode RecipeNode::view(const std::string& key) const {
  return RecipeNode(lookup(key), YAML::Node(YAML::NodeType::Map), full(key), source_);
}

void RecipeNode::finish() const {
  if (!node_.IsDefined() || !node_.IsMap()) return;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (read_.count(k)) continue;
    std::string known;
    for (const auto& r : read_) known += (known.empty() ? "" : ", ") + r;
    throw InputError(str(where(k), ": unknown key",
                         did_you_mean(k, std::vector<std::string>(read_.begin(), read_.end())),
                         known.empty() ? std::string() : str(" (known here: ", known, ")")));
  }
}

void apply_set_override(YAML::Node root, const std::string& assignment, RecipeSource& source) {
  const size_t eq = assignment.find('=');
  GRAFT_INPUT_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment,
                    ": expected key.path=value");
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    const size_t d = path.find('.', b);
    parts.push_back(path.substr(b, d == std::string::npos ? std::string::npos : d - b));
    if (d == std::string::npos) break;
    b = d + 1;
  }
  for (const auto& p : parts)
    GRAFT_INPUT_CHECK(!p.empty(), "--set ", assignment, ": empty key in '", path, "'");
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(str("--set ", assignment, ": value is not valid YAML: ", e.msg));
  }
  YAML::Node cur = root;
  std::string sofar;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    sofar += (i ? "." : "") + parts[i];
    YAML::Node next = cur[parts[i]];
    if (!next.IsDefined() || next.IsNull()) next = YAML::Node(YAML::NodeType::Map);
    GRAFT_INPUT_CHECK(next.IsMap(), "--set ", assignment, ": ", sofar,
                      " is not a mapping, cannot set a key inside it");
    cur.reset(next);
  }
  cur[parts.back()] = value;
  source.set_args[path] = "--set " + assignment;
}

int64_t require_positive(RecipeNode& n, const std::string& key, int64_t value) {
  if (value <= 0) n.fail(key, str("= ", value, ", expected a positive integer"));
  return value;
}

}  // namespace graft
