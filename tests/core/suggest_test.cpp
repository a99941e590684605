// "Did you mean": edit distance and the closeness limit.
#include "framework/core/suggest.h"

#include <gtest/gtest.h>

namespace graft {
namespace {

TEST(Suggest, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("", "ab"), 2u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("num_key_value_head", "num_key_value_heads"), 1u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2u);
}

TEST(Suggest, ClosestWithinALimit) {
  const std::vector<std::string> keys = {"hidden_size", "num_key_value_heads",
                                         "num_attention_heads", "vocab_size"};
  EXPECT_EQ(closest_name("num_key_value_head", keys), "num_key_value_heads");
  EXPECT_EQ(closest_name("hiden_size", keys), "hidden_size");
  EXPECT_EQ(closest_name("vocab_sizes", keys), "vocab_size");
  EXPECT_EQ(closest_name("flux_capacitor", keys), "");
  EXPECT_EQ(closest_name("lr", {"lrr", "betas"}), "lrr");  // short words: one edit
  EXPECT_EQ(closest_name("ab", {"xy"}), "");
  EXPECT_EQ(did_you_mean("hiden_size", keys), " (did you mean hidden_size?)");
  EXPECT_EQ(did_you_mean("zzz", keys), "");
}

}  // namespace
}  // namespace graft
