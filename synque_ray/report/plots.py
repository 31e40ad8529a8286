"""The report's figures: matplotlib (offline, no browser-side library) drawn to PNG data URIs.

Each figure is saved as a 64-colour palette PNG: a scatter plot keeps all its detail at
a fraction of the size of a full-colour one, so a 300-candidate page stays light.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SYNTHETIC, REAL, ACCENT = "#d95f02", "#1b9e77", "#7570b3"
DPI = 80
LABELLED_CANDIDATES = 24  # name candidates on an axis only up to this many


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


def _figure(width: float, height: float, fixed: bool = False):
    """A figure with one axes; `fixed` margins skip the layout engine (a figure without tick labels)."""
    figure, axes = plt.subplots(figsize=(width, height), dpi=DPI, layout=None if fixed else "constrained")
    if fixed:
        figure.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.9)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3, linewidth=0.5)
    return figure, axes


def score_spread(proxy: str, data: dict) -> str:
    """Candidates in rank order: each seed's score (dots) and the mean ± std over seeds."""
    n = len(data["ids"])
    figure, axes = _figure(min(9.0, 3.0 + 0.12 * n), 2.4)
    x = np.arange(1, n + 1)
    seed_x = [position for position, values in zip(x, data["seeds"], strict=True) for _ in values]
    axes.plot(seed_x, [v for values in data["seeds"] for v in values], ".", color=ACCENT, alpha=0.35, markersize=3)
    axes.errorbar(x, data["mean"], yerr=data["std"], fmt="o", color="black", markersize=2.5, elinewidth=0.8,
                  capsize=1.5)
    axes.set_title(f"{proxy}: score per seed, mean ± std (higher is better)", fontsize=8)
    axes.set_xlabel("candidate, in rank order", fontsize=7)
    if n <= LABELLED_CANDIDATES:
        axes.set_xticks(x, data["ids"], rotation=60, ha="right", fontsize=6)
    return data_uri(figure)


def score_vs_performance(proxy: str, points: list[tuple[float, float, str]]) -> str:
    """One dot per candidate: its mean score against its measured performance."""
    figure, axes = _figure(2.8, 2.4)
    scores, performance = [p[0] for p in points], [p[1] for p in points]
    axes.plot(scores, performance, "o", color=ACCENT, markersize=3.5, alpha=0.8)
    axes.set_title(proxy, fontsize=8)
    axes.set_xlabel("mean score", fontsize=7)
    axes.set_ylabel("measured performance", fontsize=7)
    return data_uri(figure)


def projection(candidate_xy: np.ndarray, real_xy: np.ndarray, explained: float) -> str:
    """The candidate's rows beside U_r's on two principal components."""
    figure, axes = _figure(3.0, 2.6, fixed=True)
    axes.scatter(real_xy[:, 0], real_xy[:, 1], s=9, color=REAL, alpha=0.7, label="U_r (real)", linewidths=0)
    axes.scatter(candidate_xy[:, 0], candidate_xy[:, 1], s=9, color=SYNTHETIC, alpha=0.7, label="candidate",
                 linewidths=0)
    axes.set_title(f"PCA of embeddings ({explained:.0%} of variance)", fontsize=8)
    axes.legend(fontsize=6, loc="best", markerscale=2, frameon=False)
    axes.set_xticks([])
    axes.set_yticks([])
    return data_uri(figure)
