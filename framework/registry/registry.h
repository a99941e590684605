// The layer registry: the single list of what exists.
//
// Layers and architectures register factories under stable names at static-initialisation time
// (in the .cpp that defines them, or in a plugin .so):
//
//   static graft::Register<DecoderLayer, DecoderConfig> reg(
//       "llama.decoder_layer", "decoder_layer",
//       [](const DecoderConfig& c, const BuildContext& ctx) {
//         return std::make_unique<LlamaDecoderLayer>(c, ctx);
//       });
//
// Construction goes through create<T, Config>(name, config, ctx) only; it resolves the name
// through the OverrideScopes alive on the calling thread first. Nothing else switches on a name.
// The BuildContext (device, dtype, process groups) reaches every factory; configs that carry
// `device` / `params_dtype` members get them from the context (see build_context.h). A factory
// that needs no context may take the config alone.
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

#include "framework/core/error.h"
#include "framework/registry/build_context.h"

namespace graft {

struct RegistryEntry {
  std::string name;    // "te.transformer_layer"
  std::string kind;    // "decoder_layer", "architecture", "norm", ...
  std::string source;  // "builtin" or the plugin path that registered it
  std::type_index interface { typeid(void) };
  std::type_index config{typeid(void)};
  std::any factory;  // std::function<std::unique_ptr<T>(const Config&, const BuildContext&)>
};

class Registry {
 public:
  static Registry& global();

  // A name may carry one factory per (interface, config) signature: "te.transformer_layer" is
  // both a DecoderLayer built from DecoderConfig and a TransformerLayer built from its own
  // TransformerLayerConfig. The same name twice with the same signature is an error.
  void add(RegistryEntry entry);
  const RegistryEntry* find(const std::string& name) const;  // first entry of that name
  const RegistryEntry* find(const std::string& name, std::type_index interface,
                            std::type_index config) const;
  std::vector<RegistryEntry> entries() const;  // sorted by name, then kind
  // Registered names of entries with this interface type, sorted (for error messages).
  std::vector<std::string> names_for(std::type_index interface) const;

  // Name after applying this thread's override scopes (innermost first, transitively).
  std::string resolve(const std::string& name) const;

  template <class T, class Config>
  std::unique_ptr<T> create(const std::string& name, const Config& config,
                            const BuildContext& ctx) const {
    const std::string actual = resolve(name);
    const RegistryEntry* e = find(actual, typeid(T), typeid(Config));
    if (!e) throw_not_found(name, actual, typeid(T), typeid(Config));
    using F = std::function<std::unique_ptr<T>(const Config&, const BuildContext&)>;
    const F* f = std::any_cast<F>(&e->factory);
    GRAFT_CHECK(f != nullptr, "registry entry '", actual, "' holds a factory of another type");
    GRAFT_CHECK(ctx.groups != nullptr, "creating '", actual, "': the build context has no groups");
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<T> m;
    if constexpr (requires(Config c) {
                    c.device = ctx.device;
                    c.params_dtype = ctx.dtype;
                  }) {
      Config c = config;
      c.device = ctx.device;
      c.params_dtype = ctx.dtype;
      m = (*f)(c, ctx);
    } else {
      m = (*f)(config, ctx);
    }
    note_build_time(actual, t0);
    return m;
  }

  // GRAFT_BUILD_TIMING=1: every create() taking 50 ms or more prints its name and seconds to
  // stderr (nested creates print first), to find what a large model's construction waits on.
  static void note_build_time(const std::string& name, std::chrono::steady_clock::time_point t0);

  // Source label recorded for entries added while a plugin loads (see load_plugin). While the
  // source is not "builtin", a failing add() is remembered instead of thrown (an exception must
  // not cross dlopen) and take_deferred_errors() hands the messages to load_plugin.
  void set_current_source(std::string source);
  std::vector<std::string> take_deferred_errors();

 private:
  Registry() = default;
  [[noreturn]] void throw_not_found(const std::string& name, const std::string& actual,
                                    std::type_index interface, std::type_index config) const;
  std::deque<RegistryEntry> entries_;  // deque: find() pointers stay valid across add()
  std::string current_source_ = "builtin";
  std::vector<std::string> deferred_errors_;
};

template <class T, class Config>
struct Register {
  using Factory = std::function<std::unique_ptr<T>(const Config&, const BuildContext&)>;
  using ConfigOnlyFactory = std::function<std::unique_ptr<T>(const Config&)>;
  Register(const std::string& name, const std::string& kind, Factory factory) {
    RegistryEntry e;
    e.name = name;
    e.kind = kind;
    e.interface = typeid(T);
    e.config = typeid(Config);
    e.factory = std::move(factory);
    Registry::global().add(std::move(e));
  }
  // A factory that needs nothing from the context (leaf layers of plugins, tests).
  template <class F>
  requires(std::is_invocable_r_v<std::unique_ptr<T>, F, const Config&> &&
           !std::is_invocable_v<F, const Config&, const BuildContext&>)
      Register(const std::string& name, const std::string& kind, F factory)
      : Register(name, kind,
                 Factory([f = ConfigOnlyFactory(std::move(factory))](
                             const Config& c, const BuildContext&) { return f(c); })) {}
};

// While alive, `from` resolves to `to` on this thread. Scopes nest (inner wins); the destructor
// restores the previous mapping, also during stack unwinding. Two overrides of one name within
// one scope, or an override whose target is not registered, are errors.
class OverrideScope {
 public:
  explicit OverrideScope(std::vector<std::pair<std::string, std::string>> overrides);
  // OverrideScope scope({{"llama.decoder_layer", "te.transformer_layer"}});
  OverrideScope(std::initializer_list<std::pair<std::string, std::string>> overrides)
      : OverrideScope(std::vector<std::pair<std::string, std::string>>(overrides)) {}
  ~OverrideScope();
  OverrideScope(const OverrideScope&) = delete;
  OverrideScope& operator=(const OverrideScope&) = delete;

 private:
  uint64_t id_ = 0;  // this scope's frame on the thread's stack (removed by id, not position)
};

// Loads a shared library whose static registrations add layers or architectures; entries it adds
// are labelled with its path. Throws InputError naming the file when dlopen fails.
void load_plugin(const std::string& path);

}  // namespace graft
