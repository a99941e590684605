// Native checkpoints: the committed folder layout, `latest`, keep-last-k, incomplete folders
// ignored, mismatches reported, collective saves by several (simulated) ranks loaded into
// another layout, master weights preferred for export.
#include "framework/train/checkpoint.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "framework/model/causal_lm.h"
#include "framework/optim/adamw.h"
#include "parallel/parallel_state.h"
#include "parallel/process_group.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

ProcessGroup& world1() { return *single_process_groups()->world; }

CheckpointContents contents(int64_t step) {
  CheckpointContents c;
  c.pieces = {whole_piece("model/w", Tensor::full({2, 2}, static_cast<float>(step))),
              whole_piece("optim/m/w", Tensor::zeros({2, 2}, DType::kF32))};
  c.state.step = step;
  c.state.data_position = static_cast<uint64_t>(step * 4);
  c.state.config_hash = "abc";
  c.state.tokenizer = "byte";
  c.recipe_yaml = "train: {steps: 10}\n";
  c.hf_config = {{"model_type", "llama"}};
  return c;
}

TEST(Checkpoint, WritesCompleteFolderAndLatest) {
  TempDir d;
  const std::string p = save_checkpoint(d / "ck", contents(5), 3, world1());
  EXPECT_EQ(p, d / "ck/step-00000005");
  for (const char* f : {"rank-00000.safetensors", "rank-00000.json", "manifest.json", "config.json",
                        "recipe.yaml", "trainer_state.json", "COMMIT"})
    EXPECT_TRUE(fs::is_regular_file(p + "/" + f)) << f;
  EXPECT_TRUE(is_complete_checkpoint(p));
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), p);
  TrainerState s = read_trainer_state(p);
  EXPECT_EQ(s.step, 5);
  EXPECT_EQ(s.data_position, 20u);
  EXPECT_EQ(s.config_hash, "abc");
  ShardedReader r = ShardedReader::open(p);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"model/w", "optim/m/w"}));
  EXPECT_EQ(r.read("model/w").to_f32_vector(), std::vector<float>(4, 5.0f));
  // Nothing temporary is left behind.
  for (const auto& e : fs::directory_iterator(d / "ck"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Checkpoint, KeepsTheLastK) {
  TempDir d;
  for (int64_t s : {1, 2, 3, 4}) save_checkpoint(d / "ck", contents(s), 2, world1());
  auto all = list_checkpoints(d / "ck");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], d / "ck/step-00000003");
  EXPECT_EQ(all[1], d / "ck/step-00000004");
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000004");
}

TEST(Checkpoint, UncommittedCheckpointsAreIgnored) {
  TempDir d;
  save_checkpoint(d / "ck", contents(3), 5, world1());
  // A crash mid-write leaves a temp folder, or a step folder with everything but COMMIT.
  fs::create_directories(d / "ck/.tmp-step-00000009");
  fs::copy(d / "ck/step-00000003", d / "ck/step-00000007");
  EXPECT_TRUE(is_complete_checkpoint(d / "ck/step-00000007"));
  fs::remove(d / "ck/step-00000007/COMMIT");
  EXPECT_FALSE(is_complete_checkpoint(d / "ck/step-00000007"));
  EXPECT_EQ(list_checkpoints(d / "ck"), std::vector<std::string>{d / "ck/step-00000003"});
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003");
  // A `latest` naming the uncommitted one falls back to the newest complete folder.
  test::write_text(d / "ck/latest", "step-00000007\n");
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003");
  // A corrupt trainer_state.json, manifest.json or COMMIT makes a folder incomplete too.
  for (const char* f : {"trainer_state.json", "manifest.json", "COMMIT"}) {
    save_checkpoint(d / "ck", contents(8), 5, world1());
    ASSERT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000008");
    test::write_text(d / "ck/step-00000008/" + f, "{\"step\": ");
    EXPECT_EQ(find_latest_checkpoint(d / "ck"), d / "ck/step-00000003") << f;
  }
  EXPECT_EQ(find_latest_checkpoint(d / "nothing-here"), "");
}

TEST(Checkpoint, ResavingAStepReplacesIt) {
  TempDir d;
  save_checkpoint(d / "ck", contents(2), 3, world1());
  CheckpointContents c = contents(2);
  c.state.data_position = 99;
  c.pieces[0] = whole_piece("model/w", Tensor::full({2, 2}, 7.0f));
  save_checkpoint(d / "ck", c, 3, world1());
  EXPECT_EQ(read_trainer_state(d / "ck/step-00000002").data_position, 99u);
  EXPECT_EQ(ShardedReader::open(d / "ck/step-00000002").read("model/w").to_f32_vector(),
            std::vector<float>(4, 7.0f));
  EXPECT_EQ(list_checkpoints(d / "ck").size(), 1u);
}

// `n` ranks as threads in one process: the scalar all-reduce (the save's phase barriers) is
// real; the tensor collectives are not needed by checkpoints.
class ThreadGroup : public ProcessGroup {
 public:
  struct Shared {
    explicit Shared(int n) : n(n) {}
    int n;
    std::mutex mu;
    std::condition_variable cv;
    int arrived = 0;
    int64_t generation = 0;
    double acc = 0, result = 0;
  };
  ThreadGroup(std::shared_ptr<Shared> s, int rank) : s_(std::move(s)), rank_(rank) {
    for (int r = 0; r < s_->n; ++r) ranks_.push_back(r);
  }
  int rank() const override { return rank_; }
  int size() const override { return s_->n; }
  const std::string& name() const override { return name_; }
  std::string backend() const override { return "threads"; }
  const std::vector<int>& world_ranks() const override { return ranks_; }
  std::unique_ptr<Work> all_reduce(Tensor&, ReduceOp, bool) override { unsupported(); }
  std::unique_ptr<Work> all_gather(const Tensor&, Tensor&, bool) override { unsupported(); }
  std::unique_ptr<Work> reduce_scatter(const Tensor&, Tensor&, ReduceOp, bool) override {
    unsupported();
  }
  void broadcast(Tensor&, int) override { unsupported(); }
  std::unique_ptr<Work> send_recv(const std::vector<P2POp>&, bool) override { unsupported(); }
  void barrier() override { all_reduce_scalar(0, ReduceOp::kSum); }
  double all_reduce_scalar(double v, ReduceOp op) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    const int64_t gen = s_->generation;
    s_->acc = s_->arrived == 0 ? v : (op == ReduceOp::kMax ? std::max(s_->acc, v) : s_->acc + v);
    if (++s_->arrived == s_->n) {
      s_->result = op == ReduceOp::kAvg ? s_->acc / s_->n : s_->acc;
      s_->arrived = 0;
      ++s_->generation;
      s_->cv.notify_all();
    } else {
      s_->cv.wait(lock, [&] { return s_->generation != gen; });
    }
    return s_->result;
  }

 private:
  [[noreturn]] static void unsupported() { GRAFT_CHECK(false, "not used by checkpoints"); }
  std::shared_ptr<Shared> s_;
  int rank_;
  std::string name_ = "world";
  std::vector<int> ranks_;
};

// Runs fn(rank, group) on `n` threads; returns each rank's error message ("" = returned).
std::vector<std::string> on_ranks(int n, const std::function<void(int, ProcessGroup&)>& fn) {
  auto shared = std::make_shared<ThreadGroup::Shared>(n);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      ThreadGroup g(shared, r);
      try {
        fn(r, g);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

ModelConfig micro_config(int64_t hidden) {
  nlohmann::json j = {
      {"model_type", "llama"},    {"vocab_size", 50},       {"hidden_size", hidden},
      {"intermediate_size", 48},  {"num_hidden_layers", 1}, {"num_attention_heads", 2},
      {"num_key_value_heads", 1}, {"hidden_act", "silu"},   {"max_position_embeddings", 32}};
  return parse_hf_config(j, "micro.json");
}

// Rank r of n's ZeRO-style piece of `t`: a flat range of ceil(numel / n) elements.
TensorPiece flat_shard(const std::string& name, const Tensor& t, int r, int n) {
  const int64_t size = t.numel(), shard = (size + n - 1) / n;
  const int64_t begin = std::min(size, r * shard), end = std::min(size, (r + 1) * shard);
  TensorPiece p = whole_piece(name, t);
  p.flat_offset = begin;
  p.flat_len = end - begin;
  p.data = t.contiguous().view({size}).slice(0, begin, end - begin).clone();
  return p;
}

// Three ranks each save a third of every parameter (ZeRO-style flat shards); one process loads
// the checkpoint bit-exactly. A rank that fails, or pieces that leave a gap, make every rank
// throw and publish nothing.
TEST(Checkpoint, SavedByThreeRanksLoadsIntoOne) {
  TempDir d;
  auto a = build_model(micro_config(16));
  a->init_weights(1);
  auto save_as = [&](int world, const std::function<bool(int, const std::string&)>& keep) {
    return on_ranks(world, [&](int r, ProcessGroup& g) {
      CheckpointContents c = contents(4);
      c.pieces.clear();
      for (auto& [name, p] : a->named_parameters())
        if (keep(r, name)) c.pieces.push_back(flat_shard("model/" + name, p->value, r, world));
      c.layout = {{"dp", world}, {"zero", 1}};
      EXPECT_EQ(save_checkpoint(d / "ck", c, 2, g), d / "ck/step-00000004");
    });
  };
  std::vector<std::string> errors = save_as(3, [](int, const std::string&) { return true; });
  EXPECT_EQ(errors, std::vector<std::string>(3, ""));
  const std::string path = d / "ck/step-00000004";
  ASSERT_TRUE(is_complete_checkpoint(path));
  for (const char* f : {"rank-00000.json", "rank-00001.json", "rank-00002.safetensors"})
    EXPECT_TRUE(fs::is_regular_file(path + "/" + f)) << f;
  auto b = build_model(micro_config(16));
  load_model_weights(*b, path);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_f32_vector(), pb[i].second->value.to_f32_vector())
        << pa[i].first;

  // Rank 2 skips the embedding: its last third is in no piece; no new checkpoint appears.
  fs::remove_all(path);
  errors =
      save_as(3, [](int r, const std::string& n) { return r != 2 || n != "embed_tokens.weight"; });
  EXPECT_NE(errors[0].find("tensor \"model/embed_tokens.weight\" [50, 16]: elements [534, 800) of "
                           "800 are in no piece"),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find(path + ": writing the checkpoint failed on another rank"),
            std::string::npos)
      << errors[1];
  EXPECT_EQ(find_latest_checkpoint(d / "ck"), "");
  EXPECT_FALSE(fs::exists(d / "ck/.tmp-step-00000004"));
}

TEST(Checkpoint, LoadingIntoAnotherShapeListsEveryMismatch) {
  TempDir d;
  auto a = build_model(micro_config(16));
  a->init_weights(1);
  CheckpointContents c = contents(1);
  c.pieces.clear();
  for (auto& [name, p] : a->named_parameters())
    c.pieces.push_back(whole_piece("model/" + name, p->value));
  c.pieces.push_back(whole_piece("model/extra.weight", Tensor::zeros({1}, DType::kF32)));
  const std::string path = save_checkpoint(d / "ck", c, 1, world1());
  auto b = build_model(micro_config(24));
  std::string msg = test::input_error([&] { load_model_weights(*b, path); });
  EXPECT_NE(msg.find(path + "/manifest.json: checkpoint does not match the model"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model/embed_tokens.weight has shape [50, 16], the model expects [50, 24]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unexpected model/extra.weight"), std::string::npos) << msg;
  // The same shape loads bit-exactly.
  auto e = build_model(micro_config(16));
  c.pieces.pop_back();
  save_checkpoint(d / "ck", c, 1, world1());
  load_model_weights(*e, find_latest_checkpoint(d / "ck"));
  auto pa = a->named_parameters(), pe = e->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second->value.to_f32_vector(), pe[i].second->value.to_f32_vector());
  // The optimizer state is checked the same way: here there is none.
  OptimConfig oc;
  AdamW opt(e->named_parameters(), oc);
  msg = test::input_error(
      [&] { opt.load_state(ShardedReader::open(find_latest_checkpoint(d / "ck"))); });
  EXPECT_NE(msg.find("manifest.json: optimizer state does not match this model: missing "
                     "optim/m/embed_tokens.weight; missing optim/v/embed_tokens.weight"),
            std::string::npos)
      << msg;
}

// With prefer_master the f32 master copy is read where the checkpoint has one.
TEST(Checkpoint, PreferMasterReadsTheMasterWeights) {
  TempDir d;
  auto a = build_model(micro_config(16));
  a->init_weights(1);
  CheckpointContents c = contents(1);
  c.pieces.clear();
  std::vector<std::vector<float>> masters;
  for (auto& [name, p] : a->named_parameters()) {
    c.pieces.push_back(whole_piece("model/" + name, p->value));
    Tensor m = p->value.clone();
    for (int64_t i = 0; i < m.numel(); ++i) m.data<float>()[i] += 0.25f;
    masters.push_back(m.to_f32_vector());
    c.pieces.push_back(whole_piece("optim/master/" + name, m));
  }
  const std::string path = save_checkpoint(d / "ck", c, 1, world1());
  auto working = build_model(micro_config(16)), master = build_model(micro_config(16));
  load_model_weights(*working, path);
  load_model_weights(*master, path, /*prefer_master=*/true);
  auto pa = a->named_parameters(), pw = working->named_parameters(),
       pm = master->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pw[i].second->value.to_f32_vector(), pa[i].second->value.to_f32_vector());
    EXPECT_EQ(pm[i].second->value.to_f32_vector(), masters[i]);
  }
}

}  // namespace
}  // namespace graft
