"""The report's figures, drawn offline with matplotlib (no browser-side library).

Score and evaluation plots are inline SVG whose text stays text (`svg.fonttype: none`):
names and axis labels render in the browser's own font at a readable size, and a test
can read them in the page as a person would. Figures are built as `Figure` objects, not
through pyplot (no global figure registry, a lighter import).

Projections are scatters of hundreds of points and carry no text (their title and legend
are HTML beside them): each is drawn straight onto a PIL image, some hundred times faster
than through matplotlib, and saved as a 64-colour palette PNG data URI.

Sizes: SVG figures are measured in points (1 pt = 4/3 CSS px), so `NAME_PT` 9 is a 12 px
name; projections in pixels.
"""

from __future__ import annotations

import base64
import io
import re
from html import escape

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from PIL import Image, ImageDraw

SYNTHETIC, REAL, ACCENT = "#d95f02", "#1b9e77", "#7570b3"
PROJECTION_SIZE = (400, 320)  # pixels
POINT_RADIUS = 3  # pixels
SUPERSAMPLE = 2
NAME_PT, LABEL_PT = 9, 9  # candidate names and axis labels: 12 px in the page
LABELLED_CANDIDATES = 40  # name candidates on the axis up to this many; beyond, their place in the table
PANELS_PER_FIGURE = 5  # proxies side by side in one score figure (sharing its names)
ROW_INCHES = 0.21  # height of one candidate's row in a score figure
PANEL_INCHES, GAP_INCHES = 1.9, 0.22  # width of one proxy's panel, and the space between two
CHAR_INCHES = 0.07  # a 9 pt character, wide enough for the longest name to fit
TOP, BOTTOM, RIGHT = 0.32, 0.68, 0.15  # inches: titles; tick labels and a two-line axis label; a margin


def png_uri(image: Image.Image) -> str:
    """An image as a 64-colour palette PNG data URI (FASTOCTREE and no optimize pass: 5× faster
    than MEDIANCUT with one, for a file as small)."""
    out = io.BytesIO()
    image.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def inline_svg(figure, name: str, css: str) -> str:
    """The figure as an <svg> element to put in the page (no XML prolog, no namespaces).

    `name` salts the ids matplotlib gives clip paths, so that two figures on one page never
    share an id; text is kept as text."""
    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    # Inside HTML the parser puts <svg> in its namespace: the XML namespaces and the RDF metadata
    # are dropped, so that the page names no address at all.
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, count=1, flags=re.S)
    return re.sub(r"^<svg ", f'<svg class="{css}" role="img" aria-label="{escape(name)}" ', svg, count=1)


def _panels(n: int, rows_inches: float, left: float):
    """A figure of `n` panels side by side, its margins set in inches rather than found by a layout
    engine (which draws the figure several times over: most of a report's plotting time)."""
    width = left + n * PANEL_INCHES + (n - 1) * GAP_INCHES + RIGHT
    height = TOP + rows_inches + BOTTOM
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - RIGHT / width, top=1 - TOP / height, bottom=BOTTOM / height,
                           wspace=GAP_INCHES / PANEL_INCHES)
    return figure, figure.subplots(1, n, sharey=True, squeeze=False)[0]


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
    figure, axes = _panels(len(spread), ROW_INCHES * (max(n, 3) if named else min(n, 60) / 2),
                           0.2 + CHAR_INCHES * longest if named else 0.75)
    y = np.arange(n)
    for axis, (proxy, data) in zip(axes, spread.items(), strict=True):
        axis.set_gid(f"scores-{proxy}")  # the panel's SVG group, for a test to read
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
    first = axes[0]
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


def evaluation_panels(points: dict[str, list[tuple[float, float, str]]], labels: dict[str, str], metric: str,
                      panels: int = PANELS_PER_FIGURE) -> list[str]:
    """Inline SVGs, at most `panels` proxies side by side per figure sharing the performance axis
    (`metric`): one dot per candidate, its raw mean score (`labels[proxy]`: the metric and its
    direction) against its measured performance. Each panel is the SVG group `evaluation-<proxy>`."""
    proxies = list(points)
    return [_evaluation_figure({p: points[p] for p in proxies[start:start + panels]}, labels, metric,
                               f"evaluation-{start // panels + 1}")
            for start in range(0, len(proxies), panels)]


def _evaluation_figure(points: dict[str, list], labels: dict[str, str], metric: str, name: str) -> str:
    figure, axes = _panels(len(points), 1.9, 1.0)
    for axis, (proxy, pairs) in zip(axes, points.items(), strict=True):
        axis.set_gid(f"evaluation-{proxy}")
        axis.plot([p[0] for p in pairs], [p[1] for p in pairs], "o", color=ACCENT, markersize=5, alpha=0.8)
        axis.set_title(proxy, fontsize=LABEL_PT + 1)
        axis.set_xlabel(labels[proxy].replace(" (", "\n("), fontsize=LABEL_PT)
        _value_axis(axis.xaxis)
        axis.tick_params(labelsize=NAME_PT - 1)
        axis.grid(alpha=0.3, linewidth=0.5)
    axes[0].set_ylabel(metric, fontsize=LABEL_PT)
    _value_axis(axes[0].yaxis)
    return inline_svg(figure, name, "evaluation")


def projection(candidate_xy: np.ndarray, real_xy: np.ndarray, size: tuple[int, int] = PROJECTION_SIZE) -> str:
    """The candidate's rows (orange) over U_r's (green) on two principal components, one scale for
    both axes so that distances read true; a PNG data URI. Shapes: (n, 2) and (m, 2). Drawn at
    twice the size and reduced, so that the dots come out round."""
    width, height = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    radius = POINT_RADIUS * SUPERSAMPLE
    points = np.vstack([real_xy, candidate_xy])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = radius + 8 * SUPERSAMPLE
    span = np.maximum(high - low, 1e-12)
    scale = min((width - 2 * margin) / span[0], (height - 2 * margin) / span[1])
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend: dense regions read darker
    draw.rectangle([0, 0, width - 1, height - 1], outline="#bbbbbb", width=SUPERSAMPLE)
    for xy, colour in ((real_xy, REAL), (candidate_xy, SYNTHETIC)):
        rgba = (*(int(colour[k:k + 2], 16) for k in (1, 3, 5)), 170)
        pixels = (xy - (low + high) / 2) * scale * np.array([1, -1]) + np.array([width / 2, height / 2])  # y up
        for x, y in pixels:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=rgba)
    return png_uri(image.reduce(SUPERSAMPLE))
