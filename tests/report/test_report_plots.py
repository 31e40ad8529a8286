"""The report's figures (`report/plots.py`) on tiny tables: what each figure draws (read back from
the matplotlib figure it builds), what its inline SVG says as text, and the projection's pixels."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from synque_ray.report import plots

IDS = ["alpha", "bravo", "charlie"]
SPREAD = {
    "mmd": {"ids": IDS, "mean": [0.01, 0.05, None], "std": [0.002, 0.01, None], "orientation": -1.0,
            "seeds": [[0.009, 0.011], [0.04, 0.06], []], "label": "MMD² (lower is better)"},
    "mauve": {"ids": IDS, "mean": [0.9, 0.7, 0.2], "std": [0.05, 0.0, 0.1], "orientation": 1.0,
              "seeds": [[0.85, 0.95], [0.7, 0.7], [0.1, 0.3]], "label": "MAUVE (higher is better)"},
}


@pytest.fixture
def drawn(monkeypatch):
    """Every figure `inline_svg` is given, by name, still turned into its SVG."""
    figures = {}
    real = plots.inline_svg

    def keep(figure, name, css):
        figures[name] = figure
        return real(figure, name, css)

    monkeypatch.setattr(plots, "inline_svg", keep)
    return figures


def test_each_candidate_is_drawn_with_its_seeds_and_its_mean_and_spread(drawn):
    [svg] = plots.score_panels(SPREAD)
    figure = drawn["scores-1"]
    mmd, mauve = figure.axes
    assert (mmd.get_title(), mauve.get_title()) == ("mmd", "mauve")
    assert mmd.get_xlabel() == "MMD²\n(lower is better)"  # the direction on a line of its own
    seeds = mmd.lines[0]
    assert list(seeds.get_xdata()) == [0.009, 0.011, 0.04, 0.06] and list(seeds.get_ydata()) == [0, 0, 1, 1]
    means = mmd.containers[0].lines[0]  # the errorbar's points: charlie has no mmd and is left out
    assert list(means.get_xdata()) == [0.01, 0.05] and list(means.get_ydata()) == [0, 1]
    [bars] = mmd.containers[0].lines[2]
    np.testing.assert_allclose([seg[:, 0] for seg in bars.get_segments()], [[0.008, 0.012], [0.04, 0.06]])
    assert list(mauve.containers[0].lines[0].get_xdata()) == [0.9, 0.7, 0.2]
    assert mmd.get_ylim() == (2.5, -0.5)  # the first candidate (rank 1) at the top
    assert [label.get_text() for label in mmd.get_yticklabels()] == IDS
    # The page reads the same as text: names, titles and labels, each panel a group of its own.
    for text in [*IDS, "mmd", "mauve", "(lower is better)", "(higher is better)"]:
        assert f">{text}<" in svg or f"> {text}<" in svg or text in re.findall(r">([^<>]+)<", svg), text
    assert 'id="scores-mmd"' in svg and 'id="scores-mauve"' in svg
    assert re.search(r'id="scores-1-candidate-0".*?alpha', svg, re.S)


def test_proxies_are_split_into_figures_of_at_most_so_many_panels(drawn):
    figures = plots.score_panels({**SPREAD, "pad": SPREAD["mauve"]}, panels=2)
    assert len(figures) == 2 and sorted(drawn) == ["scores-1", "scores-2"]
    assert [len(drawn[name].axes) for name in ("scores-1", "scores-2")] == [2, 1]
    assert drawn["scores-2"].axes[0].get_title() == "pad"


def test_beyond_the_labelled_count_a_candidate_is_its_place_in_the_table(drawn):
    n = plots.LABELLED_CANDIDATES + 1
    ids = [f"candidate-{k:03d}" for k in range(n)]
    spread = {"pad": {"ids": ids, "mean": list(np.linspace(0, 1, n)), "std": [0.0] * n,
                      "seeds": [[v] for v in np.linspace(0, 1, n)], "label": "PAD (lower is better)"}}
    [svg] = plots.score_panels(spread)
    axis = drawn["scores-1"].axes[0]
    assert axis.get_ylabel() == "candidate's place in the ranking table"
    assert "candidate-000" not in svg and "candidate's place in the ranking table" in svg
    assert axis.yaxis.get_major_formatter()(0, None) == "1"  # places count from 1


def test_the_evaluation_plots_each_candidates_score_against_its_performance(drawn):
    points = {"mmd": [(0.01, 0.8, "alpha"), (0.05, 0.6, "bravo")], "mauve": [(0.9, 0.8, "alpha")]}
    labels = {"mmd": "MMD² (lower is better)", "mauve": "MAUVE (higher is better)"}
    [svg] = plots.evaluation_panels(points, labels, "accuracy")
    mmd, mauve = drawn["evaluation-1"].axes
    assert list(mmd.lines[0].get_xdata()) == [0.01, 0.05] and list(mmd.lines[0].get_ydata()) == [0.8, 0.6]
    assert (mmd.get_ylabel(), mauve.get_xlabel()) == ("accuracy", "MAUVE\n(higher is better)")
    assert 'id="evaluation-mmd"' in svg and "accuracy" in svg


def test_an_inline_svg_names_no_address_and_keeps_its_ids_apart():
    first, second = plots.score_panels(SPREAD, panels=1)
    for svg, name in ((first, "scores-1"), (second, "scores-2")):
        assert svg.startswith(f'<svg class="scores" role="img" aria-label="{name}" ')
        assert "xmlns" not in svg and "<metadata>" not in svg and "<?xml" not in svg
        assert "<text" in svg  # text stays text (svg.fonttype none), not glyph paths
    ids = [set(re.findall(r'<clipPath id="([^"]+)"', svg)) for svg in (first, second)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


def _image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/png;base64,"))))


def _hex(colour: str) -> np.ndarray:
    return np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])


def test_a_projection_draws_the_candidate_over_u_r_on_one_scale():
    real = np.array([[0.0, 0.0], [0.0, 0.1]])
    candidate = np.array([[4.0, 0.0], [4.0, 0.1]])  # far to the right of U_r
    image = _image(plots.projection(candidate, real))
    assert image.size == plots.PROJECTION_SIZE and image.mode == "P" and len(image.getcolors()) <= 64
    rgb = np.asarray(image.convert("RGB")).astype(int)
    width = rgb.shape[1]

    def near(colour: str) -> np.ndarray:  # pixels within reach of a blend of the colour over white
        target = 255 + (_hex(colour) - 255) * 170 / 255
        return np.abs(rgb - target).sum(axis=2) < 40

    real_x = np.nonzero(near(plots.REAL))[1]
    candidate_x = np.nonzero(near(plots.SYNTHETIC))[1]
    assert len(real_x) and len(candidate_x)
    assert real_x.max() < width / 3 and candidate_x.min() > 2 * width / 3
    # one scale for both axes: a spread of 0.1 against 4 stays a short vertical stroke
    rows = np.nonzero(near(plots.SYNTHETIC))[0]
    assert rows.max() - rows.min() < 4 * plots.POINT_RADIUS + 10
