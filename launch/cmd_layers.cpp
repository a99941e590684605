// `graft layers`: every registry entry (layers, decoder layers, architectures) with its kind and
// the source that registered it ("builtin" or a plugin path). Plugins given with --plugin are
// loaded by main() before this runs, so their entries are listed too.
#include <algorithm>
#include <cstdio>

#include "framework/registry/registry.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run_layers(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("kind", po::value<std::string>(), "only entries of this kind");
  auto vm = parse_options("layers", "[--kind KIND] [--plugin PATH ...]", desc, args);
  if (!vm) return 0;
  const std::string kind = vm->count("kind") ? (*vm)["kind"].as<std::string>() : "";
  std::vector<RegistryEntry> shown;
  for (auto& e : Registry::global().entries())
    if (kind.empty() || e.kind == kind) shown.push_back(std::move(e));
  GRAFT_INPUT_CHECK(!shown.empty(), "--kind ", kind, ": no entry of that kind");
  size_t width = 4;
  for (const auto& e : shown) width = std::max(width, e.name.size());
  std::printf("%-*s  %-18s  %s\n", static_cast<int>(width), "name", "kind", "source");
  for (const auto& e : shown)
    std::printf("%-*s  %-18s  %s\n", static_cast<int>(width), e.name.c_str(), e.kind.c_str(),
                e.source.c_str());
  return 0;
}

RegisterCommand reg{"layers", "list registered layers and architectures with their source",
                    run_layers};

}  // namespace
}  // namespace graft::launch
