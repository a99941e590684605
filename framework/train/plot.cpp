#include "framework/train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/error.h"

namespace graft {
namespace {

// The 1, 2 or 5 · 10^k step that cuts [lo, hi] into the number of intervals closest to target.
double tick_step(double lo, double hi, int target) {
  const double range = hi - lo, raw = range / std::max(1, target);
  if (!(raw > 0)) return 1;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double best = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (std::fabs(range / (m * mag) - target) < std::fabs(range / best - target)) best = m * mag;
  return best;
}

std::string fmt(double v) {
  char buf[32];
  if (std::fabs(v) < 1e-12) v = 0;
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double step = tick_step(lo, hi, target);
  std::vector<double> t;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1)
    t.push_back(k * step + 0.0);
  return t;
}

std::vector<PlotSeries> read_loss_series(const std::string& path) {
  std::ifstream f(path);
  GRAFT_INPUT_CHECK(f.good(), path, ": cannot read the metrics file");
  PlotSeries loss{"loss", "train loss", "#1f77b4", false, {}};
  PlotSeries eval{"eval_loss", "eval loss", "#d62728", true, {}};
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(str(path, ":", n, ": not a JSON object (", e.what(), ")"));
    }
    GRAFT_INPUT_CHECK(j.is_object() && j.contains("step") && j["step"].is_number(), path, ":", n,
                      ": a metrics record needs a numeric \"step\"");
    const double step = j["step"].get<double>();
    for (PlotSeries* s : {&loss, &eval}) {
      auto it = j.find(s->name);
      if (it != j.end() && it->is_number() && std::isfinite(it->get<double>()))
        s->points.emplace_back(step, it->get<double>());
    }
  }
  GRAFT_INPUT_CHECK(!loss.points.empty(), path, ": no record with a finite \"loss\"");
  return {loss, eval};
}

std::string render_svg(const std::vector<PlotSeries>& all, const PlotOptions& o) {
  std::vector<const PlotSeries*> series;
  for (const auto& s : all)
    if (!s.points.empty()) series.push_back(&s);
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto* s : series)
    for (auto [x, y] : s->points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (series.empty()) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  x0 = std::min(x0, 0.0);
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y0 -= 0.5, y1 += 0.5;
  // The y range snapped outwards to ticks.
  const double ys = tick_step(y0, y1, 6);
  y0 = std::floor(y0 / ys + 1e-9) * ys;
  y1 = std::ceil(y1 / ys - 1e-9) * ys;

  const double left = 70, right = 20, top = o.title.empty() ? 20 : 44, bottom = 56;
  const double pw = o.width - left - right, ph = o.height - top - bottom;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + (y1 - y) / (y1 - y0) * ph; };

  std::ostringstream s;
  s << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\"" << o.height
    << "\" viewBox=\"0 0 " << o.width << " " << o.height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (!o.title.empty())
    s << "<text x=\"" << coord(o.width / 2.0) << "\" y=\"26\" text-anchor=\"middle\" "
      << "font-size=\"15\">" << escape(o.title) << "</text>\n";
  s << "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n";
  const std::vector<double> xt = nice_ticks(x0, x1, 8), yt = nice_ticks(y0, y1, 6);
  for (double x : xt)
    s << "<line x1=\"" << coord(px(x)) << "\" y1=\"" << coord(top) << "\" x2=\"" << coord(px(x))
      << "\" y2=\"" << coord(top + ph) << "\"/>\n";
  for (double y : yt)
    s << "<line x1=\"" << coord(left) << "\" y1=\"" << coord(py(y)) << "\" x2=\""
      << coord(left + pw) << "\" y2=\"" << coord(py(y)) << "\"/>\n";
  s << "</g>\n<g class=\"axes\" fill=\"black\">\n"
    << "<rect x=\"" << coord(left) << "\" y=\"" << coord(top) << "\" width=\"" << coord(pw)
    << "\" height=\"" << coord(ph) << "\" fill=\"none\" stroke=\"black\"/>\n";
  for (double x : xt)
    s << "<line x1=\"" << coord(px(x)) << "\" y1=\"" << coord(top + ph) << "\" x2=\""
      << coord(px(x)) << "\" y2=\"" << coord(top + ph + 5) << "\" stroke=\"black\"/>"
      << "<text x=\"" << coord(px(x)) << "\" y=\"" << coord(top + ph + 19)
      << "\" text-anchor=\"middle\">" << fmt(x) << "</text>\n";
  for (double y : yt)
    s << "<line x1=\"" << coord(left - 5) << "\" y1=\"" << coord(py(y)) << "\" x2=\"" << coord(left)
      << "\" y2=\"" << coord(py(y)) << "\" stroke=\"black\"/>"
      << "<text x=\"" << coord(left - 8) << "\" y=\"" << coord(py(y) + 4)
      << "\" text-anchor=\"end\">" << fmt(y) << "</text>\n";
  s << "<text x=\"" << coord(left + pw / 2) << "\" y=\"" << coord(o.height - 14.0)
    << "\" text-anchor=\"middle\">" << escape(o.x_label) << "</text>\n"
    << "<text transform=\"translate(18," << coord(top + ph / 2) << ") rotate(-90)\" "
    << "text-anchor=\"middle\">" << escape(o.y_label) << "</text>\n</g>\n";
  for (const auto* p : series) {
    s << "<polyline class=\"series\" id=\"series-" << escape(p->name) << "\" fill=\"none\" "
      << "stroke=\"" << p->color << "\" stroke-width=\"1.8\" points=\"";
    for (size_t i = 0; i < p->points.size(); ++i)
      s << (i ? " " : "") << coord(px(p->points[i].first)) << "," << coord(py(p->points[i].second));
    s << "\"/>\n";
    if (p->markers) {
      s << "<g fill=\"" << p->color << "\">";
      for (auto [x, y] : p->points)
        s << "<circle cx=\"" << coord(px(x)) << "\" cy=\"" << coord(py(y)) << "\" r=\"3\"/>";
      s << "</g>\n";
    }
  }
  // Legend, upper right inside the plot area.
  const double lw = 130, lh = 10 + 18.0 * static_cast<double>(series.size());
  const double lx = left + pw - lw - 10, ly = top + 10;
  s << "<g class=\"legend\">\n<rect x=\"" << coord(lx) << "\" y=\"" << coord(ly) << "\" width=\""
    << coord(lw) << "\" height=\"" << coord(lh)
    << "\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#999\"/>\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const double y = ly + 14 + 18.0 * static_cast<double>(i);
    s << "<line x1=\"" << coord(lx + 8) << "\" y1=\"" << coord(y) << "\" x2=\"" << coord(lx + 32)
      << "\" y2=\"" << coord(y) << "\" stroke=\"" << series[i]->color
      << "\" stroke-width=\"2\"/><text x=\"" << coord(lx + 40) << "\" y=\"" << coord(y + 4) << "\">"
      << escape(series[i]->label) << "</text>\n";
  }
  s << "</g>\n</svg>\n";
  return s.str();
}

}  // namespace graft
