"""MAUVE against mauve-text on the same histograms, and its import diet."""

import subprocess
import sys

import numpy as np
import pytest

from synque_ray.proxies.mauve import mauve_score


def test_mauve_is_one_for_identical_sets_and_lower_for_shifted():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 16)).astype(np.float32)
    same = mauve_score(real.copy(), real)
    shifted = mauve_score(real + 1.5, real)
    assert same == pytest.approx(1.0, abs=0.02)
    assert shifted < same - 0.3


def test_mauve_of_histograms_equals_mauve_text_pair_by_pair():
    from mauve.compute_mauve import get_divergence_curve_for_multinomials
    from sklearn.metrics import auc

    from synque_ray.proxies.mauve import CURVE_POINTS, mauve_of_histograms, mauve_run

    def one(p, q, s):  # mauve-text's own steps, one pair at a time
        x, y = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, CURVE_POINTS), s).T
        by_x, by_y = np.argsort(x), np.argsort(y)
        return 0.5 * (auc(x[by_x], y[by_x]) + auc(y[by_y], x[by_y]))

    rng = np.random.default_rng(3)
    counts = rng.multinomial(30, np.full(8, 1 / 8), size=(2, 40)).astype(float)  # zeros in p, q or both
    p, q = counts[0] / 30, counts[1] / 30
    for s in (1.0, 5.0):
        expected = [one(a, b, s) for a, b in zip(p, q)]
        assert mauve_of_histograms(p, q, s) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # and the point value mauve-text reports for a real pair of embedding sets
    real = rng.normal(size=(120, 16)).astype(np.float32)
    result = mauve_run(real[:60] + 0.3, real[60:], 5.0, seed=1)
    assert mauve_of_histograms(result.p_hist[None], result.q_hist[None], 5.0)[0] == pytest.approx(result.mauve,
                                                                                                  rel=1e-12)


def test_mauve_never_imports_the_text_featurizer():
    """mauve-text imports torch and transformers only to embed raw text; a fresh proxy worker
    must not pay for them (6 of its 7.5 s of imports), and importing them later still works."""
    code = ("import sys, numpy as np\n"
            "from synque_ray.proxies.mauve import mauve_score\n"
            "x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)\n"
            "assert 0 <= mauve_score(x[:30], x[30:]) <= 1\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
            "import torch\n"
            "print(torch.ones(2).sum().item())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "2.0"]
