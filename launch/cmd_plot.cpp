// `graft plot METRICS.jsonl -o CURVE.svg [--title T]`: the loss and eval-loss curves of a
// --metrics-out file against step, as an SVG drawn by framework/train/plot.h.
#include <cstdio>
#include <fstream>

#include "framework/core/error.h"
#include "framework/train/plot.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

int run_plot(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("metrics", po::value<std::string>()->required(),
                     "metrics JSONL file (graft train --metrics-out)")(
      "out,o", po::value<std::string>()->required(), "SVG file to write")(
      "title", po::value<std::string>(), "title above the plot (default: the metrics file name)");
  po::positional_options_description pos;
  pos.add("metrics", 1);
  auto vm = parse_options("plot", "METRICS.jsonl -o CURVE.svg [--title TEXT]", desc, args, &pos);
  if (!vm) return 0;
  const std::string metrics = (*vm)["metrics"].as<std::string>();
  const std::string out = (*vm)["out"].as<std::string>();
  PlotOptions o;
  o.title = vm->count("title") ? (*vm)["title"].as<std::string>() : metrics;
  std::vector<PlotSeries> series = read_loss_series(metrics);
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  GRAFT_INPUT_CHECK(f.good(), out, ": cannot create the SVG file (-o)");
  f << render_svg(series, o);
  f.close();
  GRAFT_INPUT_CHECK(f.good(), out, ": writing the SVG file failed");
  std::printf("plot: %zu loss and %zu eval-loss points -> %s\n", series[0].points.size(),
              series[1].points.size(), out.c_str());
  return 0;
}

RegisterCommand reg{"plot", "draw the loss curves of a metrics JSONL file as SVG", run_plot};

}  // namespace
}  // namespace graft::launch
