// `graft inspect` as a subprocess: a fixture lists its tensors (exit 0); every bad file and bad
// checkpoint folder ends with exactly one line on stderr and exit code 2, within a time limit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "framework/io/hf_checkpoint.h"
#include "tests/io/io_test_util.h"
#include "tests/test_paths.h"

extern char** environ;

namespace graft {
namespace {

using testing::TempDir;

struct RunResult {
  int code = -1;  // exit code; -1 when killed by a signal or the time limit
  std::string out, err;
};

// Runs graft with `args`, stdout/stderr captured in files; killed after 30 s (a hang fails).
RunResult run_graft(const std::vector<std::string>& args) {
  TempDir io;
  const std::string out = io.file("out"), err = io.file("err");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string bin = test::graft_binary();
  std::vector<std::string> argv_s = {bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  RunResult r;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.err = "cannot start " + bin;
    return r;
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "timed out";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  r.out = testing::read_bytes(out);
  r.err = testing::read_bytes(err);
  return r;
}

void expect_one_line_error(const RunResult& r, const std::string& must_contain) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
}

TEST(InspectCli, ListsFixtureTensorsConfigAndTotals) {
  RunResult r = run_graft({"inspect", testing::fixtures_dir() + "/llama-gqa"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  // One table row: name, dtype, shape, shard.
  const size_t row = r.out.find("model.layers.1.self_attn.k_proj.weight");
  ASSERT_NE(row, std::string::npos) << r.out;
  const std::string line = r.out.substr(row, r.out.find('\n', row) - row);
  EXPECT_NE(line.find("F32"), std::string::npos) << line;
  EXPECT_NE(line.find("[32, 64]"), std::string::npos) << line;
  EXPECT_NE(line.find("model-00007-of-00012.safetensors"), std::string::npos) << line;
  // Totals agree with transformers' index metadata (total_parameters, total_size).
  EXPECT_NE(r.out.find("21 tensors, 90432 parameters, 361728 bytes"), std::string::npos) << r.out;
  for (const char* field : {"model_type=llama", "hidden_size=64", "num_hidden_layers=2",
                            "num_attention_heads=4", "num_key_value_heads=2", "vocab_size=128"}) {
    EXPECT_NE(r.out.find(field), std::string::npos) << field << "\n" << r.out;
  }
}

TEST(InspectCli, ListsASingleFile) {
  RunResult r =
      run_graft({"inspect", testing::fixtures_dir() + "/gemma-mqa/reference.safetensors"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("input_ids"), std::string::npos);
  EXPECT_NE(r.out.find("I64"), std::string::npos);
  EXPECT_NE(r.out.find("[2, 12, 128]"), std::string::npos);  // logits
}

TEST(InspectCli, HelpAndUsageErrors) {
  RunResult help = run_graft({"inspect", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("PATH"), std::string::npos);
  expect_one_line_error(run_graft({"inspect"}), "path");
  expect_one_line_error(run_graft({"inspect", "/no/such/path"}), "/no/such/path");
  expect_one_line_error(run_graft({"inspect", "a", "b"}), "inspect");
  TempDir dir;  // a folder without weights
  expect_one_line_error(run_graft({"inspect", dir.path()}), "no model.safetensors");
  // A FIFO must be rejected, not waited on.
  ASSERT_EQ(mkfifo(dir.file("fifo").c_str(), 0600), 0);
  expect_one_line_error(run_graft({"inspect", dir.file("fifo")}), "not a regular file");
  testing::write_bytes(dir.file("config.json"), "{\"a\": 1,}");
  write_hf_shards(dir.path(), {{"w", Tensor::full({2}, 1.0f)}}, 1000);
  expect_one_line_error(run_graft({"inspect", dir.path()}), "config.json");
}

TEST(InspectCli, EveryBadFileExitsTwoWithOneLine) {
  TempDir dir;
  for (const auto& bad : testing::bad_safetensors_files()) {
    SCOPED_TRACE(bad.label);
    const std::string path = dir.file(bad.label + ".safetensors");
    testing::write_bytes(path, bad.bytes);
    expect_one_line_error(run_graft({"inspect", path}), bad.expect);
  }
}

TEST(InspectCli, EveryBadCheckpointExitsTwoWithOneLine) {
  for (const auto& bad : testing::bad_checkpoints()) {
    SCOPED_TRACE(bad.label);
    TempDir dir;
    bad.make(dir.path());
    expect_one_line_error(run_graft({"inspect", dir.path()}), bad.expect);
  }
}

}  // namespace
}  // namespace graft
