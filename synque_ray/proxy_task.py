"""The work of one Ray task: the registered proxies on one candidate.

A task scores either one (candidate, U_r sample) pair, for the proxies that look at
U_r, or the candidate alone, once, for those that do not (MDM, near-duplicates). It
returns plain rows, so the driver can commit them without knowing which proxies
exist. A proxy that raises or returns a non-finite value is a recorded failure of that
(candidate, proxy, seed), never a number: it is not ranked and not averaged in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from synque_ray.proxies import REGISTRY
from synque_ray.reading import seeded_indices
from synque_ray.rowsignals import Reference, check_declared, copies, duplicate_groups, nearest_real_distance

CANDIDATE_ONLY_SEED = 0  # MDM's subsample seed: one fixed subsample per candidate


@dataclass(frozen=True)
class TaskSpec:
    """What every task of a job shares: proxy parameters by name, rows kept per candidate, resamples."""

    params: dict
    sample_size: int | None
    resamples: int

    def proxies(self, uses_real: bool) -> list[str]:
        return [name for name in self.params if REGISTRY[name].uses_real == uses_real]


def _load(data) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else data.load()


def _one_proxy(name: str, synthetic: np.ndarray, real, spec: TaskSpec, seed: int) -> tuple[dict, dict]:
    """(the score row, per-row signals) of one proxy; a failure becomes a row with its error."""
    proxy = REGISTRY[name]
    started = time.perf_counter()
    params = proxy.params.model_validate(spec.params[name])
    try:
        output = proxy.compute(synthetic, real, params, seed, spec.resamples)
        value, replicates, rows = float(output.value), output.replicates, output.rows
        error = None if math.isfinite(value) else f"{name} is not finite ({value})"
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        value, replicates, rows, error = math.nan, np.empty(0), {}, f"{name}: {str(err).splitlines()[0]}"
    # Outside the failure rule above: a signal the proxy does not declare is its author's bug, not the data's.
    check_declared(rows, (signal.name for signal in proxy.signals), f"proxy '{name}'")
    row = {"proxy": name, "raw": value if error is None else math.nan,
           "score": proxy.orientation * value if error is None else math.nan,
           "replicates": [] if error else [float(x) for x in proxy.orientation * np.asarray(replicates)],
           "error": error, "seconds": time.perf_counter() - started}
    return row, rows


def score_pair(dataset_id: str, seed: int | None, synthetic, real, spec: TaskSpec, texts: list[str] | None = None,
               copies_of: Reference | None = None, evaluation: Reference | None = None) -> dict:
    """One Ray task. seed None: the candidate-only proxies, once; else the pair (candidate, U_r of seed).

    `synthetic` and `real` are arrays or handles with `load()` (the task reads its own inputs).
    Returns {"seed": seed, "scores": [score rows], "rows": {column: list}}, row_index into the candidate.
    With the candidate's `texts`, a pair also marks the rows that copy a row of `copies_of` (this
    seed's U_r: `copies_real`) and of `evaluation` (the contamination set: `copies_eval`), by
    `rowsignals.copies`, which needs texts and embeddings both.
    """
    synthetic = _load(synthetic)
    sample_seed = CANDIDATE_ONLY_SEED if seed is None else seed
    index = np.asarray(seeded_indices(len(synthetic), spec.sample_size, sample_seed))
    synthetic = synthetic[index]
    real = None if seed is None else _load(real)
    scores, signals = [], {}
    for name in spec.proxies(uses_real=seed is not None):
        row, rows = _one_proxy(name, synthetic, real, spec, sample_seed)
        scores.append({"dataset_id": dataset_id, "seed": seed, **row})
        signals.update(rows)
    if seed is None:
        groups = duplicate_groups(synthetic)  # ids are positions in the subsample: map them to row indices
        signals["duplicate_group"] = np.where(groups >= 0, index[np.maximum(groups, 0)], -1)
    else:
        signals["nearest_real_distance"] = nearest_real_distance(synthetic, real)
        mine = None if texts is None else [texts[i] for i in index]
        for name, reference in (("copies_real", copies_of), ("copies_eval", evaluation)):
            if mine is not None and reference is not None:
                signals[name] = copies(mine, synthetic, reference)
    rows = {"row_index": index.tolist(), **{k: np.asarray(v).tolist() for k, v in signals.items()}}
    return {"seed": seed, "scores": scores, "rows": rows}
