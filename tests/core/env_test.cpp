// env_choice / env_flag (framework/core/env.h): unset and "" give the default, listed values their
// index, anything else an InputError naming the variable and the values it accepts.
#include "framework/core/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "framework/core/error.h"

namespace graft {
namespace {

constexpr const char* kVar = "GRAFT_ENV_TEST_SWITCH";

TEST(EnvChoice, DefaultListedAndRejectedValues) {
  unsetenv(kVar);
  EXPECT_EQ(env_choice(kVar, {"lazy", "eager", "poison"}), 0);
  setenv(kVar, "", 1);
  EXPECT_EQ(env_choice(kVar, {"lazy", "eager", "poison"}), 0);
  setenv(kVar, "poison", 1);
  EXPECT_EQ(env_choice(kVar, {"lazy", "eager", "poison"}), 2);
  setenv(kVar, "Eager", 1);  // case matters, as for recipe values
  try {
    env_choice(kVar, {"lazy", "eager", "poison"});
    ADD_FAILURE() << "no error for 'Eager'";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "environment: GRAFT_ENV_TEST_SWITCH = 'Eager' (expected lazy, eager or poison)");
  }
  unsetenv(kVar);
}

TEST(EnvFlag, ZeroOneOrError) {
  unsetenv(kVar);
  EXPECT_FALSE(env_flag(kVar));
  setenv(kVar, "0", 1);
  EXPECT_FALSE(env_flag(kVar));
  setenv(kVar, "1", 1);
  EXPECT_TRUE(env_flag(kVar));
  for (const char* bad : {"yes", "true", "2", " 1"}) {
    setenv(kVar, bad, 1);
    EXPECT_THROW(env_flag(kVar), InputError) << bad;
  }
  unsetenv(kVar);
}

}  // namespace
}  // namespace graft
