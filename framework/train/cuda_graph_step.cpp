#include "framework/train/cuda_graph_step.h"

#include "framework/core/error.h"

namespace graft {

CudaGraphStep::CudaGraphStep(Device device, Log log, std::string refused, int64_t warmup,
                             DeviceGraphBackend* backend)
    : device_(device),
      log_(std::move(log)),
      warmup_(warmup),
      backend_(backend ? backend : device_graph_backend()) {
  GRAFT_CHECK(warmup >= 1, "CudaGraphStep: warmup = ", warmup, ", expected >= 1");
  if (!refused.empty())
    give_up(refused);
  else if (!backend_)
    give_up("this graft was built without CUDA");
}

CudaGraphStep::~CudaGraphStep() = default;

void CudaGraphStep::give_up(const std::string& why) {
  reason_ = why;
  graph_.reset();
  if (log_) log_(str("CUDA graph: ", why, "; the step runs eagerly"));
}

bool CudaGraphStep::ready(const std::vector<int64_t>& key) const { return graph_ && key == key_; }

bool CudaGraphStep::run(const std::vector<int64_t>& key, const std::function<void()>& body) {
  if (!reason_.empty()) {
    ++eager_;
    body();
    return false;
  }
  if (graph_) {
    if (key == key_) {
      graph_->replay();
      ++replays_;
      return true;
    }
    if (!mismatch_logged_ && log_)
      log_(
          "CUDA graph: a step whose shapes or host scalars differ from the captured one's runs "
          "eagerly (said once)");
    mismatch_logged_ = true;
    ++eager_;
    body();
    return false;
  }
  if (key != key_) {
    key_ = key;
    warm_ = 0;
  }
  if (warm_ < warmup_) {
    ++warm_;
    ++eager_;
    body();
    return false;
  }
  std::string why;
  std::unique_ptr<DeviceGraph> g;
  if (before_capture_) before_capture_();
  try {
    g = backend_->capture(device_, body, &why);
  } catch (const std::exception& e) {  // the backend's own checks (the capture was ended)
    why = e.what();
  }
  if (!g) {
    give_up(str("capture failed (", why.empty() ? std::string("no reason given") : why, ")"));
    if (on_discard_) on_discard_();
    ++eager_;
    body();
    return false;
  }
  graph_ = std::move(g);
  if (log_)
    log_(str("CUDA graph: the step is captured after ", warm_, " eager warm-up steps (",
             graph_->num_nodes(), " nodes) and replayed from now on"));
  graph_->replay();  // the captured step itself
  ++replays_;
  return true;
}

std::string cuda_graph_refusal(const CudaGraphConditions& c) {
  if (!c.device.is_cuda()) return "train.cuda_graph is ignored on the CPU";
  if (c.world > 1)
    return str("not with ", c.world,
               " ranks (the collectives' staging and host reductions are not capturable); "
               "one GPU only");
  if (c.fp8_profile)
    return "GRAFT_FP8_PROFILE times FP8 regions with events read on the host, which a graph "
           "cannot replay";
  if (c.fault_hook) return "a TrainOptions::after_backward hook runs host code inside the step";
  return "";
}

}  // namespace graft
