// Training curves as SVG (graft plot): loss and eval loss against step, drawn by hand (no library).
//
// The picture: a title, a framed plot area with light grid lines at "nice" ticks (1, 2, 5 · 10^k
// steps) labelled on both axes, the axis names, one polyline per series (eval points also get
// circle markers: there are few of them) and a legend in the upper right. Each series is a
// <polyline class="series" id="series-NAME"> whose points are in data order, so tests and scripts
// can read the curves back.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace graft {

struct PlotSeries {
  std::string name;   // id suffix: "loss", "eval_loss"
  std::string label;  // legend text
  std::string color;  // SVG color
  bool markers = false;
  std::vector<std::pair<double, double>> points;  // (step, value), finite values only
};

struct PlotOptions {
  std::string title;
  std::string x_label = "step";
  std::string y_label = "loss (nats/token)";
  int width = 720, height = 420;
};

// The loss and eval_loss series of a metrics JSONL file (--metrics-out); records without the key
// or with null values are left out. InputError naming file:line for a line that is not JSON, and
// when no record has a loss.
std::vector<PlotSeries> read_loss_series(const std::string& metrics_path);

// Series with no points are left out of the plot and the legend.
std::string render_svg(const std::vector<PlotSeries>& series, const PlotOptions& options);

// Ticks covering [lo, hi]: the multiples of a 1, 2 or 5 · 10^k step (the one giving the number of
// intervals closest to `target`) in [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target);

}  // namespace graft
