// Registry and OverrideScope semantics: duplicate names, unknown names (the error lists what is
// registered), nesting, restore on destruction and on a throwing factory, per-thread scopes,
// conflicting overrides in one scope.
#include "framework/registry/registry.h"

#include <gtest/gtest.h>

#include <thread>

#include "layers/decoder.h"

namespace graft {
namespace {

// A tiny interface of its own, so these tests never disturb the real layers.
struct Widget {
  virtual ~Widget() = default;
  virtual std::string id() const = 0;
};
struct WidgetConfig {
  bool fail = false;
};
struct NamedWidget : Widget {
  explicit NamedWidget(std::string n) : n(std::move(n)) {}
  std::string id() const override { return n; }
  std::string n;
};

Register<Widget, WidgetConfig> reg_a("test.widget_a", "widget", [](const WidgetConfig&) {
  return std::make_unique<NamedWidget>("a");
});
Register<Widget, WidgetConfig> reg_b("test.widget_b", "widget", [](const WidgetConfig&) {
  return std::make_unique<NamedWidget>("b");
});
Register<Widget, WidgetConfig> reg_c("test.widget_c", "widget",
                                     [](const WidgetConfig& c) -> std::unique_ptr<Widget> {
                                       if (c.fail) throw InputError("widget_c: asked to fail");
                                       return std::make_unique<NamedWidget>("c");
                                     });

std::string make(const std::string& name, WidgetConfig c = {}) {
  return Registry::global().create<Widget, WidgetConfig>(name, c, local_context(c))->id();
}

TEST(Registry, DuplicateNameIsAnError) {
  EXPECT_THROW((Register<Widget, WidgetConfig>(
                   "test.widget_a", "widget",
                   [](const WidgetConfig&) { return std::make_unique<NamedWidget>("dup"); })),
               InputError);
  EXPECT_EQ(make("test.widget_a"), "a");  // the first registration stands
}

TEST(Registry, UnknownNameListsRegisteredNames) {
  try {
    make("test.widget_zzz");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("test.widget_zzz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test.widget_a"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test.widget_c"), std::string::npos) << msg;
  }
}

TEST(Registry, WrongInterfaceIsAnInputError) {
  EXPECT_THROW(
      (Registry::global().create<DecoderLayer, DecoderConfig>("test.widget_a", {}, BuildContext{})),
      InputError);
}

TEST(Registry, EntriesCarryKindAndSource) {
  const RegistryEntry* e = Registry::global().find("test.widget_b");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->kind, "widget");
  EXPECT_EQ(e->source, "builtin");
  const RegistryEntry* te = Registry::global().find("te.transformer_layer");
  ASSERT_NE(te, nullptr);
  int decoder_entries = 0;
  for (const auto& x : Registry::global().entries())
    decoder_entries += x.name == "te.transformer_layer";
  EXPECT_EQ(decoder_entries, 2);  // DecoderConfig factory and TransformerLayerConfig factory
}

TEST(OverrideScope, NestsAndRestoresOnDestruction) {
  EXPECT_EQ(make("test.widget_a"), "a");
  {
    OverrideScope outer({{"test.widget_a", "test.widget_b"}});
    EXPECT_EQ(make("test.widget_a"), "b");
    {
      OverrideScope inner({{"test.widget_a", "test.widget_c"}});
      EXPECT_EQ(make("test.widget_a"), "c");
    }
    EXPECT_EQ(make("test.widget_a"), "b");
    {
      OverrideScope chained({{"test.widget_b", "test.widget_c"}});  // a -> b -> c
      EXPECT_EQ(make("test.widget_a"), "c");
      EXPECT_EQ(Registry::global().resolve("test.widget_a"), "test.widget_c");
    }
  }
  EXPECT_EQ(make("test.widget_a"), "a");
}

TEST(OverrideScope, RestoresWhenTheFactoryThrows) {
  auto build = [] {
    OverrideScope s({{"test.widget_a", "test.widget_c"}});
    return make("test.widget_a", WidgetConfig{true});
  };
  EXPECT_THROW(build(), InputError);
  EXPECT_EQ(make("test.widget_a"), "a");
  EXPECT_EQ(Registry::global().resolve("test.widget_a"), "test.widget_a");
}

TEST(OverrideScope, IsPerThread) {
  OverrideScope s({{"test.widget_a", "test.widget_b"}});
  std::string other;
  std::thread t([&] { other = make("test.widget_a"); });
  t.join();
  EXPECT_EQ(other, "a");
  EXPECT_EQ(make("test.widget_a"), "b");
  // And the other way round: a scope opened in another thread does not leak here.
  std::string inside;
  std::thread t2([&] {
    OverrideScope s2({{"test.widget_b", "test.widget_c"}});
    inside = make("test.widget_b");
  });
  t2.join();
  EXPECT_EQ(inside, "c");
  EXPECT_EQ(make("test.widget_b"), "b");
}

TEST(OverrideScope, ConcurrentBuildInAnotherThreadIsUnaffected) {
  // Real decoder layers: this thread swaps in the TE layer while another thread builds the
  // reference one at the same time.
  DecoderConfig c;
  c.hidden_size = 8;
  c.ffn_hidden_size = 8;
  c.num_attention_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  std::vector<std::string> seen(20);
  std::thread t([&] {
    for (auto& s : seen)
      s = Registry::global()
              .create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c, local_context(c))
              ->type();
  });
  for (int i = 0; i < 20; ++i) {
    OverrideScope s({{"llama.decoder_layer", "te.transformer_layer"}});
    auto layer = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                        local_context(c));
    EXPECT_EQ(layer->type(), "te.transformer_layer");
  }
  t.join();
  for (const auto& s : seen) EXPECT_EQ(s, "llama.decoder_layer");
}

TEST(OverrideScope, ConflictsAndBadTargetsAreErrors) {
  using Overrides = std::vector<std::pair<std::string, std::string>>;
  EXPECT_THROW(OverrideScope(Overrides{{"test.widget_a", "test.widget_b"},
                                       {"test.widget_a", "test.widget_c"}}),
               InputError);
  EXPECT_THROW(OverrideScope(Overrides{{"test.widget_a", "test.nope"}}), InputError);
  // A target of another interface cannot stand in.
  EXPECT_THROW(OverrideScope(Overrides{{"llama.decoder_layer", "test.widget_a"}}), InputError);
  // Cycles are reported when resolved.
  OverrideScope a({{"test.widget_a", "test.widget_b"}});
  OverrideScope b({{"test.widget_b", "test.widget_a"}});
  EXPECT_THROW(make("test.widget_a"), InputError);
}

}  // namespace
}  // namespace graft
