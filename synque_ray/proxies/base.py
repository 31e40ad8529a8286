"""What every proxy declares, and what it returns.

A proxy is one module holding a `Proxy`: its name, its parameters (a pydantic model,
which is also its config section), its orientation, the fewest rows it needs and its
function. The registry in `synque_ray.proxies` collects them; config validation,
dispatch and size checks all read from it, so adding a proxy is one module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Self, TypeVar, overload

import numpy as np
from pydantic import BaseModel, ConfigDict

from synque_ray.rowsignals import Signal


class Params(BaseModel):
    """A proxy's parameters: strict (an unknown key is an error) and hashable into result keys.

    A parameter that can only make the proxy fail (or score every candidate the same) is
    refused when the config is read, with a one-line reason: never discovered per candidate.
    NaN and infinity are refused for every number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def min_rows(self) -> tuple[int, str]:
        """(fewest rows a candidate needs, why): one row unless the proxy says otherwise."""
        return 1, "scoring"

    def min_real_rows(self) -> tuple[int, str]:
        """(fewest rows a U_r sample needs, why)."""
        return 1, "scoring"

    def for_run(self, candidate_rows: Iterable[int], real_rows: Iterable[int]) -> Self:
        """These parameters with whatever depends on the whole run resolved, from the rows each
        candidate is scored on and each U_r sample's rows; as they are unless a proxy says
        otherwise. Why: a value every candidate must share (PAD's training size) cannot be
        chosen by each candidate's task alone."""
        return self


@dataclass
class ProxyOutput:
    """One proxy on one (candidate, U_r sample).

    value: the raw metric as the paper defines it.
    replicates: shape (resamples,), draws of the metric's sampling error around `value`
        (for rank intervals): their spread is the spread of `value` over fresh draws of the
        rows the proxy reads, the candidate's and U_r's alike (`split_replicates`,
        `half_sample_replicates`, `two_sample_replicates`; PAD resamples rows with replacement
        and refits, MDM reads the candidate halves at its jackknife's spread; all are `centred`);
        empty when the proxy cannot be resampled cheaply.
    rows: per-row signals of the candidate's rows, each of shape (n_candidate,), each one
        the proxy declares in its `Proxy.signals`.
    """

    value: float
    replicates: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: dict[str, np.ndarray] = field(default_factory=dict)


P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class About:
    """What a reader is told of a proxy, declared once beside it: name (its config key and `proxy`
    column), title (the report's headers and axes), legend (what it measures, which way is better,
    when to trust it: `synque explain` and the report's legend). The legend and the titles are
    built from these (`synque_ray.legend`); a proxy computed by a stage of its own (perplexity,
    fluency, LENS) declares one in its module. default: in the proxies a config gets when it names
    none (`config.DEFAULT_PROXIES`)."""

    name: str
    title: str
    legend: str
    default: bool = False


@dataclass(frozen=True)
class Proxy(Generic[P]):
    """name: config key and `proxy` column; orientation: +1 when a higher raw value predicts
    a better candidate, -1 when lower does; uses_real: False for proxies of the candidate
    alone (computed once per candidate, not once per seed); signals: the per-row signals its
    `ProxyOutput.rows` may hold (row_scores.parquet's columns are built from them); title and legend:
    what a reader is told of it (`About`). Generic in its
    parameters model, so that `compute` may take its own (an `MdmParams`, not any `Params`)."""

    name: str
    params: type[P]
    orientation: float
    compute: Callable[[np.ndarray, np.ndarray | None, P, int, int], ProxyOutput]
    uses_real: bool = True
    signals: tuple[Signal, ...] = ()
    title: str = ""
    legend: str = ""
    default: bool = False  # in the proxies a config gets when it names none

    @property
    def about(self) -> About:
        return About(self.name, self.title or self.name, self.legend, self.default)


def section_proxies(section: object) -> tuple[About, ...]:
    """The proxies a config section's stage produces, as the section declares them in its `PROXIES`
    (a stage's section: `EmbeddingConfig`, `PerplexityParams`, `LensConfig`, ...); () for anything else (an
    embedding proxy's own parameters, a field's `X | None` annotation). Why on the section: the config, which sits below
    the stages, reads the names it accepts from its typed sections, and the stage registry reads what
    each stage produces from the same declaration, so the two cannot disagree."""
    declared = getattr(section, "PROXIES", ())
    if not isinstance(declared, tuple) or not all(isinstance(about, About) for about in declared):
        name = getattr(section, "__name__", section)
        raise TypeError(f"{name}.PROXIES must be a tuple of About, got {declared!r}")
    return declared


def _checked(name: str, value: np.ndarray) -> np.ndarray:
    """`value` as a float64 array, refused unless 2-D, non-empty and finite."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim != 2 or len(value) == 0:
        raise ValueError(f"{name} embeddings must be a non-empty 2-D array, got shape {value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} embeddings hold a non-finite value")
    return value


@overload
def check_embeddings(synthetic: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def check_embeddings(synthetic: np.ndarray, real: None = None) -> tuple[np.ndarray, None]: ...
def check_embeddings(synthetic: np.ndarray, real: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """2-D float arrays with the same number of columns; raises ValueError naming the problem."""
    synthetic = _checked("synthetic", synthetic)
    if real is None:
        return synthetic, None
    real = _checked("real", real)
    if synthetic.shape[1] != real.shape[1]:
        raise ValueError(f"synthetic and real embeddings differ in width: {synthetic.shape[1]} vs {real.shape[1]}")
    return synthetic, real


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Shape (resamples, n): how often each of n rows is drawn in each bootstrap resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


HALVES = "half-sample replicates"  # the reason a proxy gives for the rows its halves need


CANDIDATE_STREAM = 20261206  # the candidate's halves: one stream for every seed


def split_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(stream for U_r's rows, stream for the candidate's rows).

    U_r's stream depends on the seed alone, so every candidate scored against one U_r sample
    gets the same U_r halves: their replicates then share U_r's error the way their values do
    (one U_r sample is shared by every candidate of a seed). The candidate's stream is the same
    in every seed, because a candidate's rows are: replicate b of every seed draws the same
    candidate halves, so averaging a candidate's replicates over seeds (the rank intervals do)
    keeps its own sampling error whole instead of dividing it by the seeds as if each seed
    had drawn a fresh candidate."""
    return np.random.default_rng(seed), np.random.default_rng(CANDIDATE_STREAM)


def disjoint_parts(rows: int, parts: int, splits: int, rng: np.random.Generator) -> np.ndarray:
    """Shape (parts, splits, rows) bool: per split, `parts` disjoint random subsets of `rows // parts`
    rows each, drawn without replacement (the rows left over sit in none, so every part is a
    sample of one size and its metric has one distribution)."""
    if rows < parts:
        raise ValueError(f"{parts} disjoint parts need at least {parts} rows, got {rows}")
    order = rng.random((splits, rows)).argsort(axis=1).argsort(axis=1)
    size = rows // parts
    return np.stack([(order >= i * size) & (order < (i + 1) * size) for i in range(parts)])


def halves(rows: int, splits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(first, second), each of shape (splits, rows) bool: per split, two disjoint random halves of
    `rows // 2` rows each (`disjoint_parts`)."""
    if rows < 2:
        raise ValueError(f"{HALVES} need at least 2 rows, got {rows}")
    first, second = disjoint_parts(rows, 2, splits, rng)
    return first, second


def split_count(resamples: int) -> int:
    """How many splits make `resamples` replicates: each split gives a replicate and its mirror."""
    return (resamples + 1) // 2


def split_replicates(first: np.ndarray, second: np.ndarray, value: float, resamples: int,
                     scale: float = 1.0) -> np.ndarray:
    """Shape (resamples,): value ± scale · (first − second) / 2, from a proxy's metric on the two
    disjoint halves of each split (`first`, `second`: shape (split_count(resamples),)); MMD²
    and MAUVE use it.

    Why: the two halves of a split are two independent samples of the same sizes (n/2
    candidate rows, m/2 U_r rows) from the same distributions, with no row drawn twice, so
    no metric reads duplicated rows as spurious similarity (the bootstrap's fault). Their
    difference has mean 0 and variance 2·Var(T at half size); halved, Var(T at half size) / 2,
    which is Var(T at full size) when the variance falls as 1 / size (MMD² between
    distributions that differ). Both samples are split, so the replicates carry the
    variation of a fresh candidate *and* a fresh U_r sample, as the rank intervals need.
    `scale` is for a metric whose variance falls faster (MMD² between equal distributions,
    `mmd.py`). Each split also gives its mirror image (the halves swapped), so the
    replicates centre exactly on the point value.
    """
    deviation = scale * (np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)) / 2
    return value + np.stack([deviation, -deviation], axis=1).reshape(-1)[:resamples]


def half_sample_replicates(on_halves: np.ndarray, value: float) -> np.ndarray:
    """Shape (resamples,): a proxy's metric on random halves of both samples (one half of the
    candidate's rows and one of U_r's per replicate, `halves`' first masks: `on_halves`),
    `centred` on the point value: the delete-half jackknife. Coverage uses it.

    Why: a half drawn without replacement holds no row twice, so no k-NN ball is centred on
    a copy of a row or covered by copies (the bootstrap's fault, which made coverage's
    replicates up to 2.2 times too wide), and each U_r half draws its balls from its own
    rows, so the radii vary as they do with a fresh U_r (density's old replicates kept
    them fixed: 0.58–0.89 of the truth). For a mean over rows the spread over halves is
    the sampling spread at full size (d = n / 2 rows left out, and the jackknife's factor
    (n − d) / d is 1); for density and coverage it is within 0.86–1.27 of the truth by
    simulation, where the mirror difference of two disjoint halves (`split_replicates`)
    was 0.65 too narrow for a coverage near 1. Both samples are split, so the spread is
    that of a fresh candidate *and* a fresh U_r sample, as the rank intervals need.
    """
    return centred(on_halves, value)


def two_sample_replicates(on_candidate_halves: np.ndarray, on_real_halves: np.ndarray, value: float) -> np.ndarray:
    """Shape (resamples,): value + the deviation of the metric on a candidate half (all of U_r kept)
    + the deviation on a U_r half (all of the candidate kept), each `centred`. Density uses it.

    Why: the value's error is, to first order, the sum of what the candidate's rows add and what
    U_r's add, two independent samples; each half-sample deviation reads one of them at full
    size, and their sum reads both. Read on halves of both at once, a metric whose per-row values
    depend on U_r's size (density's balls widen on a U_r half, so its candidate rows' counts vary
    less from row to row) reads the candidate's part at the wrong size. Replicate b reads the
    same candidate half and U_r half as every other proxy's replicate b."""
    return (centred(on_candidate_halves, value) + centred(on_real_halves, value) - value)


def centred(replicates: np.ndarray, value: float) -> np.ndarray:
    """Replicates (resamples,) shifted so that their mean is the point value.

    Why: a metric read on fewer distinct rows than the data's reads systematically off:
    a bootstrap resample holds only about 63% of the distinct rows (PAD's replicates), a
    half-sample 50% (density's, coverage's and MDM's),
    and a coverage or a k-NN density at that size sits away from the full sample's.
    Their spread is the sampling spread, their centre is not; subtracting the replicates'
    own estimate of that bias, mean(replicates) − value (Efron & Tibshirani's bias
    correction), puts them around the point value; for a mean of per-row values (PAD's
    errors) the shift is only resampling noise. A shifted replicate may leave the metric's
    range (a coverage above 1): replicates only feed rank intervals. Empty stays empty.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    if not len(replicates):
        return replicates
    return replicates - replicates.mean() + value


def replicate_spread_ratio(proxy: Proxy, params: Params,
                           draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
                           draws: int, resamples: int, seed: int = 0, truth_draws: int = 0) -> float:
    """How wide a proxy's replicates are against the truth: the mean over `draws` independent
    (candidate, U_r) pairs, each from `draw(rng)` ((n, d) and (m, d) arrays), of the sd of the
    pair's replicates, over the sd of the proxy's value across the pairs (the sampling spread
    of the estimate over a fresh candidate and a fresh U_r). 1 is right; above 1 the rank
    intervals are too wide (no power), below 1 too narrow (false certainty). Pair t uses the
    proxy seed t, so the pairs' replicates are drawn independently too.

    `truth_draws` above `draws`: the value's sd is read on that many pairs (the first `draws`
    with their replicates, the rest without, which costs only the value). Why: a metric with a
    skewed spread (MAUVE near its ceiling, where a rare pair falls far) has an sd that 25 to
    60 pairs pin down only to ±20–30%, and the replicates' mean sd settles faster."""
    rng = np.random.default_rng(seed)
    values, spreads = [], []
    for t in range(max(draws, truth_draws)):
        synthetic, real = draw(rng)
        output = proxy.compute(synthetic, real, params, t, resamples if t < draws else 0)
        values.append(output.value)
        if t < draws:
            spreads.append(float(np.std(output.replicates)))
    return float(np.mean(spreads) / np.std(values, ddof=1))
