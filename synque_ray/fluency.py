"""The FLUENCY proxy: what sentence embeddings cannot see. Pure functions, no Ray.

A sentence embedding barely moves when a row's words are shuffled, its characters
garbled or its end cut off, yet generators do write such rows. A small causal LM sees
them at once: it finds a scrambled or truncated row far less likely than a fluent one.

Per row: the mean negative log-likelihood per text token (nats) under the bundled
SmolLM2-135M as it ships (no fine-tuning), the row's text alone after a start token,
scored exactly as the perplexity proxy scores U_r (`perplexity.text_nll`). Per
(candidate, U_r sample): the two-sample **energy distance** between the candidate's
distribution of these values and U_r's,

    E = 2·mean|x_i − y_j| − mean_{i≠i'}|x_i − x_i'| − mean_{j≠j'}|y_j − y_j'|,

with U-statistics for the two within-sample terms. score = −E (higher is better). Why
this distance:
- it compares whole distributions, both ways: a candidate of garbled rows (NLL too high)
  and one of stock phrases (too low) both differ from U_r's spread of fluency;
- it grows with how far apart they are (≈ 2|shift| for a shift larger than the spread,
  in nats), where the KS statistic stops at 1 once the two no longer overlap and so
  cannot tell a little garbled from very garbled;
- with U-statistics its expected value is exactly 0 when both sides come from one
  distribution, whatever their sizes, where the empirical Wasserstein-1 distance is
  larger for a smaller sample of the same distribution: a 16-row candidate would lose
  to a 300-row one for its size alone.

A row "looks garbled" when its NLL is above U_r's `percentile` (95th) for that seed:
about 5% of rows like U_r's cross it (`garbled_share`). Not the 99th: names, tickers and
links give real rows a long tail of high NLL, as far out as a shuffle moves a fluent row,
so on real financial tweets no shuffled row crossed U_r's 99th percentile and 18% crossed
its 95th; on the demo's fluent headlines 32% crossed the 99th (BENCHMARKS.md).

Cost: one forward pass of a 135M model per row (about 5 GFLOP for a 20-token headline,
a fifth of it the LM head), so a run scores a seeded sample of each candidate
(`max_rows`) and of each U_r sample (`real_rows`); the bootstrap replicates resample
the scored rows, so the rank interval carries the sampling noise of that sample.
The NLL of a text does not depend on the seed: each distinct text is scored once per
model and cached by its hash (`synque_ray.stage.fluency`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from synque_ray.models import resolve_llm
from synque_ray.perplexity import PLACEHOLDER, load, text_nll
from synque_ray.proxies.base import About, Params, centred, resample_weights
from synque_ray.rowsignals import Signal


ABOUT = About("fluency", "fluency",
              ("Energy distance between the candidate's and U_r's distributions of per-row token NLL under a"
               " small language model (score = −distance, in nats); closer to 0 is better. It sees what "
               "embeddings miss (shuffled words, garbled characters, rows cut short) and counts such rows in"
               " garbled_share. On CPUs it scores a sample of rows (fluency.max_rows), so read its interval."))

# The row signals the fluency stage adds to row_scores.parquet (null on rows it did not score).
TOKEN_NLL = Signal("token_nll", pl.Float64, "token NLL (fluency)",
                   "the row's mean negative log-likelihood per token under a small LM, in nats: high = the LM "
                   "finds the row unlikely (scrambled, garbled or cut text)", shown=True)
GARBLED = Signal("garbled", pl.Boolean, "garbled (fluency)",
                 "true: the row's token NLL is above U_r's 95th percentile for that seed (fluency.percentile)")
SIGNALS = (TOKEN_NLL, GARBLED)


class FluencyParams(Params):
    """The `fluency` proxy's parameters (its config section).

    The defaults are sized for the bundled SmolLM2-135M on a shared 2-core CPU, where it
    scores a few headlines per second per core (BENCHMARKS.md): 16 rows of each candidate
    and 64 of each U_r sample keep `synque demo` within half again its time without the
    proxy. Garbling shows in nearly every row it touches (a shuffled row's NLL is about 3
    nats above a fluent one's, against a spread of about 1 nat), so 16 rows tell a garbled
    candidate from a fluent one; subtle differences need more rows. On a GPU set both to
    null (every row).
    """

    PROXIES: ClassVar[tuple[About, ...]] = (ABOUT,)  # what its stage produces (`section_proxies`)

    model: str = "bundled-smollm2"
    """`bundled-smollm2` or a Hugging Face causal-LM folder; keyed by its content."""
    max_rows: int | None = Field(16, ge=2)
    """Rows of each candidate scored (one seeded sample, the same for every seed); null: every row."""
    real_rows: int | None = Field(64, ge=2)
    """Rows of each U_r sample scored (a sample drawn with that seed); null: every row."""
    max_length: int = Field(64, ge=1)
    """Text tokens kept per row; a longer row is cut (a headline is 10-40 tokens)."""
    batch_size: int = Field(32, ge=1)
    """Rows per forward pass."""
    percentile: float = Field(95.0, gt=0, lt=100)
    """A row is garbled above this percentile of U_r's token NLL (per seed)."""
    seed: int = 0
    """Fixes which candidate rows are scored."""

    def min_rows(self) -> tuple[int, str]:
        return 2, "fluency's energy distance"

    def min_real_rows(self) -> tuple[int, str]:
        return 2, "fluency's energy distance"


def resolve_model(params: FluencyParams) -> tuple[str, str]:
    """(folder to load, stable model id for result and cache keys)."""
    return resolve_llm(params.model, "fluency.model")


@functools.lru_cache(maxsize=1)
def _model(model_path: str):
    """The LM and its tokenizer, loaded once per process (never trained here, so safe to share
    between the tasks a worker runs)."""
    return load(model_path)


def has_text(text: str) -> bool:
    """A row the LM can score: it holds a non-space character (an empty row has no tokens)."""
    return bool(text.strip())


def mean_token_nll(model_path: str, texts: Sequence[str], params: FluencyParams, threads: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(mean NLL per text token in nats, text-token count), each of shape (len(texts),); a row
    without text gets NaN and 0 (it has no tokens to score, and is left out, never 0)."""
    nll, tokens = np.full(len(texts), np.nan), np.zeros(len(texts), dtype=np.int64)
    scored = [i for i, text in enumerate(texts) if has_text(text)]
    if scored:
        model, tokenizer = _model(model_path)
        sums, counts = text_nll(model, tokenizer, [texts[i] for i in scored], PLACEHOLDER, params.max_length,
                                params.batch_size, threads)
        nll[scored], tokens[scored] = sums / counts, counts
    return nll, tokens


def _values(name: str, values: np.ndarray) -> np.ndarray:
    """A 1-D float array of at least 2 finite values; raises ValueError naming `name`."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"{name} needs at least 2 scored rows, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds a non-finite value")
    return values


def _weighted_energy(x: np.ndarray, y: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Shape (k,): the energy distance of k weighted samples. wx (k, n), wy (k, m): how often each
    row is drawn (all ones: the data as it is). A row drawn twice is two draws at distance 0, as in
    any multiset, so the within terms divide by n(n − 1) pairs of draws."""
    n, m = wx.sum(axis=1), wy.sum(axis=1)
    cross = ((wx @ np.abs(x[:, None] - y[None, :])) * wy).sum(axis=1) / (n * m)
    within_x = ((wx @ np.abs(x[:, None] - x[None, :])) * wx).sum(axis=1) / (n * (n - 1))
    within_y = ((wy @ np.abs(y[:, None] - y[None, :])) * wy).sum(axis=1) / (m * (m - 1))
    return 2 * cross - within_x - within_y


def energy_distance(candidate: np.ndarray, real: np.ndarray) -> float:
    """The unbiased energy distance between two 1-D samples (each at least 2 values): 0 in
    expectation for one distribution at any sizes, about 2|shift| for a large shift."""
    x, y = _values("candidate", candidate), _values("real", real)
    return float(_weighted_energy(x, y, np.ones((1, len(x))), np.ones((1, len(y))))[0])


def resampled_energy(candidate: np.ndarray, real: np.ndarray, resamples: int, rng: np.random.Generator
                     ) -> np.ndarray:
    """Shape (resamples,): the energy distance with both sides' rows drawn with replacement, `centred`
    on the point value (duplicated draws shrink the within terms, which would shift every replicate up)."""
    x, y = _values("candidate", candidate), _values("real", real)
    replicates = _weighted_energy(x, y, resample_weights(len(x), resamples, rng),
                                  resample_weights(len(y), resamples, rng))
    return centred(replicates, energy_distance(x, y))


def garbled_threshold(real: np.ndarray, percentile: float) -> float:
    """U_r's `percentile` of token NLL (numpy's linear interpolation): above it a row is garbled."""
    return float(np.percentile(_values("real", real), percentile))


@dataclass
class FluencyScore:
    """Fluency of one candidate sample against one U_r sample.

    energy: the energy distance between their token-NLL distributions (nats; ≥ 0 up to noise).
    replicates: shape (resamples,), the energy distance with both sides resampled.
    threshold: U_r's `percentile` of token NLL; garbled: shape (n_candidate,), NLL above it.
    """

    energy: float
    replicates: np.ndarray
    threshold: float
    garbled: np.ndarray

    @property
    def score(self) -> float:
        """Higher = predicted better: −energy distance."""
        return -self.energy


def fluency_score(candidate: np.ndarray, real: np.ndarray, percentile: float, resamples: int,
                  rng: np.random.Generator) -> FluencyScore:
    """The proxy on one (candidate, U_r sample) from their rows' token NLL (rows without text
    already left out)."""
    x, y = _values("candidate", candidate), _values("real", real)
    threshold = garbled_threshold(y, percentile)
    return FluencyScore(energy_distance(x, y), resampled_energy(x, y, resamples, rng), threshold, x > threshold)
