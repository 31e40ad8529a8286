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

Which rows look garbled: the NLL alone cannot tell. Names, tickers, cashtags and links give
real rows a long tail of high NLL, as far out as a shuffle moves a fluent row: on real
financial tweets only 18% of shuffled rows crossed U_r's 95th percentile (BENCHMARKS.md). So
each row is also compared with *itself*: its **order gain** is the NLL of the same words in a
shuffled order (one fixed permutation per text) minus the NLL of the row as written. A fluent
row loses much when shuffled (a median 1.4 nats on tweets, 1.5 on headlines); a row already
shuffled, or so garbled that its order means little, loses about nothing. The row's own words
are in both terms, so its tickers and names cancel. A row is garbled (`garbled_share`) when
its order gain is below U_r's `percentile` (5th) of order gain: about 5% of rows like U_r's
are. The threshold is taken over every seed's scored U_r rows together (each distinct text
once): it describes the real domain, which every seed's sample draws from, and an extreme
percentile of 32 rows would move a lot between samples (the share a fluent candidate crosses
with it, too). Rows cut short are caught when the cut leaves little order to lose (38-55% of
tweets cut after half their words, 8-25% of cut headlines); a row of fewer than two distinct
words has no order and no gain, and is not judged (null). The gain rests on one shuffle, which
now and then reads about as well as the row: that noise is why the limit is high (findings.LIMITS).

Fluency is a screen (`findings.SCREENS`): its score is ranked and shown but never votes in
the ensemble, and a candidate whose `garbled_share` is over its limit is passed over and
ranked after every other (docs/proxies.md). Whether text is fluent is pass or fail: among
fluent candidates the score's order is noise, and as a member of the ensemble it lowered the
sentiment benchmark's Spearman.

Cost: two forward passes of a 135M model per row (the row and its shuffle; about 5 GFLOP each
for a 20-token headline, a fifth of it the LM head), so a run scores a seeded sample of each
candidate (`max_rows`) and of each U_r sample (`real_rows`); the bootstrap replicates resample
the scored rows, so the rank interval carries the sampling noise of that sample. Neither value
depends on the seed: each distinct text is scored once per model and cached by its hash
(`synque_ray.stage.fluency`).
"""

from __future__ import annotations

import functools
import hashlib
import math
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
              ("A screen, not a vote: it never enters the ensemble, and a candidate whose garbled_share is over"
               " its limit is passed over and ranks after every other. It sees what embeddings miss (shuffled"
               " words, garbled characters, rows cut short): a row is garbled when shuffling its words costs a"
               " small language model less than it costs 95% of U_r's rows. Its score, shown for reading only,"
               " is the energy distance between the candidate's and U_r's per-row token NLL (−distance, in"
               " nats; closer to 0 is better). On CPUs it scores a sample of rows (fluency.max_rows)."),
              default=True)

# The row signals the fluency stage adds to row_scores.parquet (null on rows it did not score).
TOKEN_NLL = Signal("token_nll", pl.Float64, "token NLL (fluency)",
                   "the row's mean negative log-likelihood per token under a small LM, in nats: high = the LM "
                   "finds the row unlikely (scrambled, garbled or cut text)", shown=True)
ORDER_GAIN = Signal("order_gain", pl.Float64, "order gain (fluency)",
                    "how much less likely the small LM finds the row's words shuffled than as written (token NLL "
                    "of the shuffle minus the row's, in nats): low = its word order carries little (shuffled or "
                    "garbled text); null for a row of fewer than two distinct words", shown=True)
GARBLED = Signal("garbled", pl.Boolean, "garbled (fluency)",
                 "true: the row's order gain is below U_r's 5th percentile (fluency.percentile); null for a row "
                 "without an order gain")
SIGNALS = (TOKEN_NLL, ORDER_GAIN, GARBLED)


class FluencyParams(Params):
    """The `fluency` proxy's parameters (its config section).

    The defaults are sized for the bundled SmolLM2-135M on a shared 2-core CPU, where it
    scores a few headlines per second per core, each twice (the row and its shuffle;
    BENCHMARKS.md): 16 rows of each candidate and 32 of each U_r sample keep `synque demo`
    within half again its time without the proxy. Garbling shows in most rows it touches
    (two in three shuffled tweets fall below U_r's 5th percentile of order gain), so 16 rows
    tell a garbled candidate from a fluent one; subtle differences need more rows. On a GPU
    set both to null (every row).
    """

    PROXIES: ClassVar[tuple[About, ...]] = (ABOUT,)  # what its stage produces (`section_proxies`)

    model: str = "bundled-smollm2"
    """`bundled-smollm2` or a Hugging Face causal-LM folder; keyed by its content."""
    max_rows: int | None = Field(16, ge=2)
    """Rows of each candidate scored (one seeded sample, the same for every seed); null: every row."""
    real_rows: int | None = Field(32, ge=2)
    """Rows of each U_r sample scored (a sample drawn with that seed); null: every row."""
    max_length: int = Field(64, ge=1)
    """Text tokens kept per row; a longer row is cut (a headline is 10-40 tokens)."""
    batch_size: int = Field(32, ge=1)
    """Rows per forward pass."""
    percentile: float = Field(5.0, gt=0, lt=50)
    """A row is garbled below this percentile of U_r's order gain (every seed's scored rows together)."""
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


def shuffled_text(text: str) -> str | None:
    """The row's words (split on white space) in an order drawn from the text's own hash, never
    the order as written; None for a row of fewer than two distinct words (no order to lose).
    Fixed by the text alone, so a text's order gain is the same in every run and can be cached."""
    words = text.split()
    if len(set(words)) < 2:
        return None
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little"))
    while True:  # a permutation that changes the words' order (at least half of all do)
        order = rng.permutation(len(words))
        shuffled = [words[i] for i in order]
        if shuffled != words:
            return " ".join(shuffled)


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


def row_fluency(model_path: str, texts: Sequence[str], params: FluencyParams, threads: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token NLL, text-token count, order gain), each of shape (len(texts),): the rows and their
    `shuffled_text` scored in one batch; order gain = the shuffle's token NLL − the row's, NaN for
    a row without text or without an order (`shuffled_text` is None)."""
    shuffles = {i: shuffle for i, text in enumerate(texts) if has_text(text) and (shuffle := shuffled_text(text))}
    ordered = list(shuffles)
    nll, tokens = mean_token_nll(model_path, [*texts, *shuffles.values()], params, threads)
    gain = np.full(len(texts), np.nan)
    gain[ordered] = nll[len(texts):] - nll[ordered]
    return nll[:len(texts)], tokens[:len(texts)], gain


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


def gain_threshold(real_gain: np.ndarray, percentile: float) -> float:
    """U_r's `percentile` of order gain (numpy's linear interpolation) over its rows that have one:
    below it a row is garbled. NaN when fewer than 2 rows have one (nothing to judge by)."""
    gain = np.asarray(real_gain, dtype=np.float64)
    gain = gain[np.isfinite(gain)]
    return float(np.percentile(gain, percentile)) if len(gain) >= 2 else float("nan")


def garbled_rows(gain: np.ndarray, gain_below: float) -> np.ndarray:
    """Shape (rows,) of True, False or None: a row is garbled when its order gain is below
    `gain_below`; None (not judged) for a row without a gain or when there is no threshold."""
    gain = np.asarray(gain, dtype=np.float64)
    judged = np.isfinite(gain) & math.isfinite(gain_below)
    garbled = np.full(len(gain), None, dtype=object)
    garbled[judged] = gain[judged] < gain_below
    return garbled


@dataclass
class FluencyScore:
    """Fluency of one candidate sample against one U_r sample.

    energy: the energy distance between their token-NLL distributions (nats; ≥ 0 up to noise).
    replicates: shape (resamples,), the energy distance with both sides resampled.
    garbled: shape (n_candidate,) of True, False or None (`garbled_rows`).
    """

    energy: float
    replicates: np.ndarray
    garbled: np.ndarray

    @property
    def score(self) -> float:
        """Higher = predicted better: −energy distance."""
        return -self.energy


def fluency_score(candidate: np.ndarray, real: np.ndarray, gain: np.ndarray, gain_below: float, resamples: int,
                  rng: np.random.Generator) -> FluencyScore:
    """The proxy on one (candidate, U_r sample) from their rows' token NLL (rows without text already
    left out), the candidate rows' order gain (NaN: none) and U_r's threshold of it (`gain_threshold`)."""
    x, y = _values("candidate", candidate), _values("real", real)
    gain = np.asarray(gain, dtype=np.float64)
    if gain.shape != x.shape:
        raise ValueError(f"gain has shape {gain.shape}, the candidate's NLL {x.shape}")
    return FluencyScore(energy_distance(x, y), resampled_energy(x, y, resamples, rng), garbled_rows(gain, gain_below))
