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
    replicates: shape (resamples,), the same metric with the rows resampled with
        replacement, then `centred` on `value` (for rank intervals); empty when the proxy
        cannot be resampled cheaply.
    rows: per-row signals of the candidate's rows, each of shape (n_candidate,), each one
        the proxy declares in its `Proxy.signals`.
    """

    value: float
    replicates: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: dict[str, np.ndarray] = field(default_factory=dict)


P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class Proxy(Generic[P]):
    """name: config key and `proxy` column; orientation: +1 when a higher raw value predicts
    a better candidate, -1 when lower does; uses_real: False for proxies of the candidate
    alone (computed once per candidate, not once per seed); signals: the per-row signals its
    `ProxyOutput.rows` may hold (row_scores.parquet's columns are built from them). Generic in its
    parameters model, so that `compute` may take its own (an `MdmParams`, not any `Params`)."""

    name: str
    params: type[P]
    orientation: float
    compute: Callable[[np.ndarray, np.ndarray | None, P, int, int], ProxyOutput]
    uses_real: bool = True
    signals: tuple[Signal, ...] = ()


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


def centred(replicates: np.ndarray, value: float) -> np.ndarray:
    """Bootstrap replicates (resamples,) shifted so that their mean is the point value.

    Why: a resample with replacement holds only about 63% of the distinct rows, so a
    metric that counts distinct rows or pairs (coverage, MAUVE's histograms, the biased
    MMD²'s diagonal) reads systematically off on it: coverage lower, MAUVE lower, MMD²
    higher. Their spread is still the sampling spread, but their centre is the metric's
    value at ~63% of the rows, not at the data's. Subtracting the bootstrap's own estimate
    of that bias, mean(replicates) − value (Efron & Tibshirani's bias correction), puts
    every proxy's replicates around its point value; for a mean of per-row values
    (density, PAD's errors) the shift is only resampling noise. A shifted replicate may
    leave the metric's range (a coverage above 1): replicates only feed rank intervals.
    Empty stays empty.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    if not len(replicates):
        return replicates
    return replicates - replicates.mean() + value
