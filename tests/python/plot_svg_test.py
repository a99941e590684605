#!/usr/bin/env python3
"""python.plot_svg: `graft plot` writes a well-formed SVG (parsed with xml.etree) with both
series, axes labels, ticks and a legend, and refuses a bad metrics file with a one-line error.

    plot_svg_test.py GRAFT_BIN REPO_ROOT
"""
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def main():
    graft = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="graft-plot-test-") as d:
        metrics, svg = os.path.join(d, "m.jsonl"), os.path.join(d, "curve.svg")
        with open(metrics, "w") as f:
            for step in range(1, 61):
                loss = 5.6 * 0.97 ** step + 1.5
                ev = f', "eval_loss": {loss + 0.1}' if step % 20 == 0 else ""
                f.write(f'{{"step": {step}, "loss": {loss}{ev}}}\n')
        r = subprocess.run([graft, "plot", metrics, "-o", svg, "--title", "tiny & co"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, r.stdout
        assert "60 loss and 3 eval-loss points" in r.stdout, r.stdout
        root = ET.parse(svg).getroot()
        assert root.tag == NS + "svg", root.tag
        series = {p.get("id"): p for p in root.iter(NS + "polyline")}
        assert set(series) == {"series-loss", "series-eval_loss"}, series.keys()
        pts = {k: [tuple(map(float, xy.split(","))) for xy in p.get("points").split()]
               for k, p in series.items()}
        assert len(pts["series-loss"]) == 60 and len(pts["series-eval_loss"]) == 3
        xs = [x for x, _ in pts["series-loss"]]
        assert xs == sorted(xs), "x grows with the step"
        assert pts["series-loss"][0][1] < pts["series-loss"][-1][1], "lower loss is lower down"
        texts = [t.text for t in root.iter(NS + "text")]
        for want in ("tiny & co", "step", "loss (nats/token)", "train loss", "eval loss", "60"):
            assert want in texts, f"{want!r} not among the texts {texts}"
        assert len(list(root.iter(NS + "circle"))) == 3, "eval points have markers"

        r = subprocess.run([graft, "plot", os.path.join(d, "missing.jsonl"), "-o", svg],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 2 and r.stdout.count("\n") == 1, (r.returncode, r.stdout)
        assert "cannot read the metrics file" in r.stdout, r.stdout
    print("python.plot_svg: PASS")


if __name__ == "__main__":
    main()
