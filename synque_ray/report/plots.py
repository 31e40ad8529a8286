"""The report's figures, drawn offline with matplotlib (no browser-side library).

Score and evaluation plots are inline SVG whose text stays text (`svg.fonttype: none`):
names and axis labels render in the browser's own font at a readable size, and a test
can read them in the page as a person would. Projections are scatters of hundreds of
points, so they stay 64-colour palette PNG data URIs: all their detail at a fraction of
the weight of an SVG or a full-colour PNG.

Sizes: SVG figures are measured in points (1 pt = 4/3 CSS px), so `NAME_PT` 9 is a 12 px
name; PNG figures in pixels at `DPI`.
"""

from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

SYNTHETIC, REAL, ACCENT = "#d95f02", "#1b9e77", "#7570b3"
DPI = 80
NAME_PT, LABEL_PT = 9, 9  # candidate names and axis labels: 12 px in the page
LABELLED_CANDIDATES = 40  # name candidates on the axis up to this many; beyond, their rank stands for them
PANELS_PER_FIGURE = 5  # proxies side by side in one score figure (sharing its names)
ROW_INCHES = 0.21  # height of one candidate's row in a score figure


def data_uri(figure) -> str:
    """The figure as a palette PNG data URI (drawn once, encoded once); the figure is closed."""
    figure.canvas.draw()
    width, height = figure.canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), figure.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    image = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    plt.close(figure)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def inline_svg(figure, name: str, css: str) -> str:
    """The figure as an <svg> element to put in the page (no XML prolog); the figure is closed.

    `name` salts the ids matplotlib gives clip paths, so that two figures on one page never
    share an id; text is kept as text."""
    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"^<svg ", f'<svg class="{css}" role="img" aria-label="{_attr(name)}" ', svg, count=1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _number(value: float, _=None) -> str:
    """A tick label: three significant digits, no offset or exponent unless the value needs one."""
    return f"{value:.3g}".replace("-", "−")


def _value_axis(axis) -> None:
    """At most four ticks, each short: labels that never run into each other."""
    axis.set_major_locator(MaxNLocator(nbins=4))
    axis.set_major_formatter(FuncFormatter(_number))


def score_panels(spread: dict[str, dict], panels: int = PANELS_PER_FIGURE) -> list[str]:
    """Inline SVGs of every proxy's scores, at most `panels` proxies side by side per figure,
    sharing one candidate axis in the order of `spread` (the same for every proxy): per
    candidate its per-seed values (faint dots) and their mean ± std over seeds. The value axis
    is the proxy's raw metric and says which way is better."""
    proxies = list(spread)
    figures = []
    for start in range(0, len(proxies), panels):
        group = proxies[start:start + panels]
        figures.append(_score_figure({p: spread[p] for p in group}, f"scores-{start // panels + 1}"))
    return figures


def _score_figure(spread: dict[str, dict], name: str) -> str:
    ids = next(iter(spread.values()))["ids"]
    n, named = len(ids), len(ids) <= LABELLED_CANDIDATES
    longest = max((len(i) for i in ids), default=4) if named else 4
    height = 1.2 + ROW_INCHES * (n if named else min(n, 60) / 2)
    width = min(1.9, 0.4 + 0.075 * longest) + 2.0 * len(spread)
    figure, axes = plt.subplots(1, len(spread), figsize=(width, height), sharey=True, squeeze=False,
                                layout="constrained")
    y = np.arange(n)
    for axis, (proxy, data) in zip(axes[0], spread.items(), strict=True):
        seed_y = [row for row, values in zip(y, data["seeds"], strict=True) for _ in values]
        axis.plot([v for values in data["seeds"] for v in values], seed_y, ".", color=ACCENT, alpha=0.35,
                  markersize=4)
        shown = [k for k, m in enumerate(data["mean"]) if m is not None]
        axis.errorbar([data["mean"][k] for k in shown], y[shown], xerr=[data["std"][k] for k in shown], fmt="o",
                      color="black", markersize=3.5, elinewidth=1, capsize=2)
        axis.set_title(proxy, fontsize=LABEL_PT + 1)
        axis.set_xlabel(data["label"].replace(" (", "\n("), fontsize=LABEL_PT)  # the direction on its own line
        _value_axis(axis.xaxis)
        axis.tick_params(labelsize=NAME_PT - 1)
        axis.grid(alpha=0.3, linewidth=0.5)
    first = axes[0][0]
    first.set_ylim(n - 0.5, -0.5)  # rank 1 at the top
    if named:
        first.set_yticks(y, ids, fontsize=NAME_PT)
        for k, label in enumerate(first.get_yticklabels()):
            label.set_gid(f"{name}-candidate-{k}")
    else:
        first.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        first.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v) + 1}"))
        first.set_ylabel("candidate's place in the ranking table", fontsize=LABEL_PT)
    return inline_svg(figure, name, "scores")


def score_vs_performance(proxy: str, label: str, metric: str, points: list[tuple[float, float, str]]) -> str:
    """An inline SVG, one dot per candidate: its raw mean score (`label`: the metric and its
    direction) against its measured performance (`metric`)."""
    figure, axes = plt.subplots(figsize=(3.3, 2.9), layout="constrained")
    scores, performance = [p[0] for p in points], [p[1] for p in points]
    axes.plot(scores, performance, "o", color=ACCENT, markersize=5, alpha=0.8)
    axes.set_title(proxy, fontsize=LABEL_PT + 1)
    axes.set_xlabel(label, fontsize=LABEL_PT)
    axes.set_ylabel(metric, fontsize=LABEL_PT)
    _value_axis(axes.xaxis)
    _value_axis(axes.yaxis)
    axes.tick_params(labelsize=NAME_PT - 1)
    axes.grid(alpha=0.3, linewidth=0.5)
    return inline_svg(figure, f"evaluation-{proxy}", "evaluation")


def projection(candidate_xy: np.ndarray, real_xy: np.ndarray, explained: float) -> str:
    """The candidate's rows beside U_r's on two principal components (a PNG data URI)."""
    figure, axes = plt.subplots(figsize=(5.0, 4.0), dpi=DPI)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.91)
    axes.scatter(real_xy[:, 0], real_xy[:, 1], s=14, color=REAL, alpha=0.7, label="U_r (real rows)", linewidths=0)
    axes.scatter(candidate_xy[:, 0], candidate_xy[:, 1], s=14, color=SYNTHETIC, alpha=0.7,
                 label="candidate rows", linewidths=0)
    axes.set_title(f"PCA of embeddings ({explained:.0%} of variance)", fontsize=11)
    axes.legend(fontsize=11, loc="best", markerscale=1.6, framealpha=0.85)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.grid(alpha=0.3, linewidth=0.5)
    return data_uri(figure)
