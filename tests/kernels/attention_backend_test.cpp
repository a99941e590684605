// The attention backend request (model.attention) and the report of what the kernels ran.
#include <gtest/gtest.h>

#include <string>

#include "framework/core/error.h"
#include "kernels/attention.h"

namespace graft {
namespace {

TEST(AttnBackend, ParsesTheThreeNamesAndRejectsOthersNamingTheKey) {
  EXPECT_EQ(parse_attn_backend("auto", "k"), AttnBackend::kAuto);
  EXPECT_EQ(parse_attn_backend("cudnn", "k"), AttnBackend::kCudnn);
  EXPECT_EQ(parse_attn_backend("unfused", "k"), AttnBackend::kUnfused);
  try {
    parse_attn_backend("flash", "r.yaml: model.attention");
    ADD_FAILURE() << "flash accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "r.yaml: model.attention = 'flash': expected auto, cudnn or unfused");
  }
}

TEST(AttnBackend, ReportSummarisesWhatRan) {
  AttnReport r;
  EXPECT_EQ(r.summary(), "none");
  r.add(false, AttnBackend::kCudnn);
  EXPECT_EQ(r.summary(), "cudnn");  // forward only (evaluation)
  r.add(true, AttnBackend::kCudnn);
  EXPECT_EQ(r.summary(), "cudnn");
  r.add(true, AttnBackend::kUnfused);
  EXPECT_EQ(r.summary(), "mixed (fwd cudnn; bwd cudnn 1 unfused 1)");
  r.reset();
  r.add(false, AttnBackend::kCudnn);
  r.add(true, AttnBackend::kUnfused);
  EXPECT_EQ(r.summary(), "cudnn fwd, unfused bwd");
}

// The CPU runs its reference and says so; a strict cudnn request there is an InputError.
TEST(AttnBackend, CpuReportsCpuAndRejectsCudnn) {
  std::vector<float> q(2 * 4, 0.5f), o(2 * 4), lse(2);
  AttnFwdParams p;
  p.q = p.k = p.v = q.data();
  p.out = o.data();
  p.lse = lse.data();
  p.shape.batch = 1, p.shape.seq_q = p.shape.seq_kv = 2, p.shape.heads_q = p.shape.heads_kv = 1;
  p.shape.head_dim = 4;
  AttnBackend ran = AttnBackend::kAuto;
  p.ran = &ran;
  attn_fwd(p);
  EXPECT_EQ(ran, AttnBackend::kCpu);
  p.backend = AttnBackend::kCudnn;
  EXPECT_THROW(attn_fwd(p), InputError);
}

}  // namespace
}  // namespace graft
