"""Which label-free ensemble rule to default to, judged where the truth is set by construction.

    python benchmarks/sim_ensemble.py [--groups 300] [--candidates 8 32]

Each simulated group has `candidates` candidates with a true quality t ~ N(0, 1) and five
proxies, each scoring candidate c on seed s as sign·t_c + shared·z_c + sd·e_{c,s} (z shared by
the proxies that have `shared` > 0, as embedding proxies share their model's blind spots; e
independent). Scenarios: five equal proxies; one unrelated or reversed; noise levels spread
out; a near-useless proxy (as MAUVE on a held-out task); a correlated core of three proxies
(as MDM/MMD²/PAD on one embedding); two bad ones. Every rule runs through the engine's own
`reduce.add_ensemble` (5 seeds, no replicates); the figure is the ensemble's Spearman with t,
averaged over the seeds and the groups, beside the best single proxy and the mean of the good
ones. Rules: the engine's "mean", "robust" and "half robust" (half equal weights, half robust),
the per-seed median rank, and two sharper functions of the same agreement (squared; a/(1 − a²),
the one-factor model's weight when a is read as a loading) passed as explicit weights.
Each rule's regret in a scenario is the better of (the plain mean, the best single proxy) minus
the rule; the default is the rule whose worst regret over the scenarios is smallest, since no
label-free rule can know which scenario a task is in.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from synque_ray.ranks import rankdata, spearman
from synque_ray.reduce import (DECORRELATION_SHRINK, _complete_ranks, _loo_agreement, _rank_correlations, add_ensemble,
                               ensemble_weights)
from synque_ray.vocabulary import SCORE_SCHEMA

SEEDS = 5
# Each proxy: (noise sd, sign of the truth, weight of the shared error).
SCENARIOS = {
    "five equal": [(1.0, 1, 0.0)] * 5,
    "one unrelated": [(1.0, 1, 0.0)] * 4 + [(1.0, 0, 0.0)],
    "one reversed": [(1.0, 1, 0.0)] * 4 + [(1.0, -1, 0.0)],
    "noise spread 0.5-3": [(0.5, 1, 0.0), (1.0, 1, 0.0), (1.5, 1, 0.0), (2.0, 1, 0.0), (3.0, 1, 0.0)],
    "one near-useless": [(0.7, 1, 0.3), (0.8, 1, 0.3), (0.8, 1, 0.3), (0.7, 1, 0.0), (1.0, 0.12, 0.0)],
    "correlated core": [(0.6, 1, 0.8), (0.6, 1, 0.8), (0.6, 1, 0.8), (0.8, 1, 0.0), (1.2, 1, 0.0)],
    "two bad": [(0.7, 1, 0.0)] * 3 + [(1.0, 0, 0.0), (1.0, -1, 0.0)],
    # Four proxies led by one error unrelated to the truth (three on one embedding model plus a
    # size-driven one) beside two clean ones: the four agree with each other far more than with it.
    "four share an error": [(0.4, 0.3, 1.0)] * 4 + [(0.8, 1, 0.0)] * 2,
    # Three proxies share a size-like error as large as their signal, beside three clean ones.
    "three share a size error": [(0.5, 1, 1.0)] * 3 + [(0.8, 1, 0.0)] * 3,
    # One proxy much better than four noisy ones (on real tasks one proxy often leads by a margin).
    "one strong": [(0.3, 1, 0.0)] + [(1.5, 1, 0.0)] * 4,
    # Four good proxies on one embedding model (a shared error) beside a weak one of another family,
    # as fluency beside MDM, MMD², PAD and MAUVE on the sentiment benchmark.
    "a weak outsider": [(0.5, 1, 0.5)] * 4 + [(1.0, 0.2, 0.0)],
}


def _agreement(scores: pl.DataFrame) -> dict[str, float]:
    """Each proxy's leave-one-out Spearman agreement, averaged over seeds (what "robust" weighs by)."""
    proxies = sorted(set(scores["proxy"]))
    per_seed = [_loo_agreement(ranks) for _, group in scores.group_by(["seed"], maintain_order=True)
                if (ranks := _complete_ranks(group, proxies)) is not None]
    return dict(zip(proxies, np.mean(per_seed, axis=0), strict=True))


def _sharpened(rule):
    def weights(scores: pl.DataFrame) -> dict[str, float]:
        raw = {p: rule(max(a, 0.0)) for p, a in _agreement(scores).items()}
        total = sum(raw.values())
        return {p: v / total for p, v in raw.items()} if total > 0 else ensemble_weights(scores, "mean")
    return weights


def _median_rank(scores: pl.DataFrame, ids: list[str], seed: int) -> np.ndarray:
    rows = scores.filter(pl.col("seed") == seed)
    ranks = [rankdata(-rows.filter(pl.col("proxy") == p).sort("dataset_id")["score"].to_numpy())
             for p in sorted(set(rows["proxy"]))]
    return -np.median(ranks, axis=0)


def _blend(scores: pl.DataFrame) -> dict[str, float]:
    """Half equal weights, half the robust agreement weights."""
    robust, equal = ensemble_weights(scores, "robust"), ensemble_weights(scores, "mean")
    return {p: (robust[p] + equal[p]) / 2 for p in equal}


def _solved(scores: pl.DataFrame, target: str) -> dict[str, float]:
    """Among the proxies with a positive robust weight a, weights from their rank correlations R (per
    seed, averaged; `reduce._rank_correlations`), clipped at 0 and normalised: "agreement",
    (R + sI)⁻¹·a, the factor-score weights (Ψ⁻¹λ under a one-factor model R = λλᵀ + Ψ, a proxy
    weighed by its signal over its own error); "min-variance x a", ((R + sI)⁻¹·1)·a (an
    unrelated proxy, which minimum variance alone favours for being uncorrelated, weighs its
    agreement: about 0). s = DECORRELATION_SHRINK; robust weights where nothing can be solved."""
    robust = ensemble_weights(scores, "robust")
    keep = sorted(p for p, w in robust.items() if w > 0)
    per_seed = [_rank_correlations(ranks) for _, group in scores.group_by(["seed"], maintain_order=True)
                if (ranks := _complete_ranks(group, keep)) is not None]
    if len(keep) < 2 or not per_seed:
        return robust
    shrunk = np.mean(per_seed, axis=0) + DECORRELATION_SHRINK * np.eye(len(keep))
    agreement = np.array([robust[p] for p in keep])
    if target == "agreement":
        w = np.clip(np.linalg.solve(shrunk, agreement), 0, None)
    else:
        w = np.clip(np.linalg.solve(shrunk, np.ones(len(keep))), 0, None) * agreement
    if w.sum() <= 0:
        return robust
    return {**dict.fromkeys(robust, 0.0), **{p: float(v) for p, v in zip(keep, w / w.sum(), strict=True)}}


def _decorrelated_capped(scores: pl.DataFrame) -> dict[str, float]:
    """The decorrelated weights, each capped at an equal share of the proxies kept: a block that moves
    together still counts about as one, but no proxy weighs more than the plain mean would give it."""
    weights = ensemble_weights(scores, "decorrelated")
    kept = [p for p, w in weights.items() if w > 0]
    if not kept:
        return weights
    capped = {p: min(w, 1.0 / len(kept)) for p, w in weights.items()}
    total = sum(capped.values())
    return {p: w / total for p, w in capped.items()}


RULES = {
    "mean": lambda scores: add_ensemble(scores, method="mean"),
    "robust": lambda scores: add_ensemble(scores, method="robust"),
    "half robust": lambda scores: add_ensemble(scores, weights=_blend(scores)),
    "capped .2": lambda scores: add_ensemble(scores, weights=_sharpened(lambda a: min(a, 0.2))(scores)),
    "decorrelated": lambda scores: add_ensemble(scores, method="decorrelated"),
    "factor score": lambda scores: add_ensemble(scores, weights=_solved(scores, "agreement")),
    "decorrelated, capped": lambda scores: add_ensemble(scores, weights=_decorrelated_capped(scores)),
    "decorrelated x agreement": lambda scores: add_ensemble(scores, weights=_solved(scores, "min-variance x a")),
    "capped .4": lambda scores: add_ensemble(scores, weights=_sharpened(lambda a: min(a, 0.4))(scores)),
    "squared agreement": lambda scores: add_ensemble(scores, weights=_sharpened(lambda a: a * a)(scores)),
    "a/(1-a^2)": lambda scores: add_ensemble(
        scores, weights=_sharpened(lambda a: min(a, 0.99) / (1 - min(a, 0.99) ** 2))(scores)),
}


def group_scores(rng: np.random.Generator, proxies: list[tuple], candidates: int) -> tuple[pl.DataFrame, np.ndarray]:
    truth = rng.normal(size=candidates)
    shared = rng.normal(size=candidates)
    rows = []
    for seed in range(SEEDS):
        for k, (sd, sign, weight) in enumerate(proxies):
            values = sign * truth + weight * shared + sd * rng.normal(size=candidates)
            rows += [{"dataset_id": f"c{c:03d}", "proxy": f"p{k}", "seed": seed, "raw": v, "score": v}
                     for c, v in enumerate(values)]
    return pl.DataFrame(rows, schema=SCORE_SCHEMA), truth


def ensemble_spearman(ensemble: pl.DataFrame, truth: np.ndarray) -> float:
    rows = ensemble.filter(pl.col("proxy") == "ensemble").sort(["seed", "dataset_id"])
    per_seed = rows.group_by("seed", maintain_order=True)
    return float(np.mean([spearman(group["score"].to_numpy(), truth) for _, group in per_seed]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--candidates", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rules", nargs="+", default=None,
                        help="only these rules (mean and the median rank always run)")
    parser.add_argument("--scenarios", nargs="+", default=None, help="only these scenarios")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    chosen = {k: v for k, v in RULES.items() if args.rules is None or k in args.rules or k == "mean"}
    rules = [*chosen, "median rank"]
    print("Spearman with the truth; in brackets each rule's regret: the better of (mean, best single proxy) "
          "minus the rule")
    print("| candidates | scenario | " + " | ".join(rules) + " | best proxy |")
    print("|---" * (len(rules) + 3) + "|")
    regrets: dict[str, list[float]] = {rule: [] for rule in rules}
    for candidates in args.candidates:
        for name, proxies in SCENARIOS.items():
            if args.scenarios is not None and name not in args.scenarios:
                continue
            got: dict[str, list[float]] = {k: [] for k in [*rules, "best"]}
            for _ in range(args.groups):
                scores, truth = group_scores(rng, proxies, candidates)
                for rule, combine in chosen.items():
                    got[rule].append(ensemble_spearman(combine(scores), truth))
                ids = sorted(set(scores["dataset_id"]))
                got["median rank"].append(np.mean([spearman(_median_rank(scores, ids, s), truth)
                                                   for s in range(SEEDS)]))
                each = [np.mean([spearman(scores.filter((pl.col("proxy") == f"p{k}") & (pl.col("seed") == s))
                                          .sort("dataset_id")["score"].to_numpy(), truth) for s in range(SEEDS)])
                        for k in range(len(proxies))]
                got["best"].append(max(each))
            means = {k: float(np.mean(v)) for k, v in got.items()}
            reference = max(means["mean"], means["best"])
            for rule in rules:
                regrets[rule].append(reference - means[rule])
            print(f"| {candidates} | {name} | " + " | ".join(
                f"{means[r]:.3f} ({reference - means[r]:+.3f})" for r in rules) + f" | {means['best']:.3f} |")
    print("| | **worst-case regret** | " + " | ".join(f"**{max(regrets[r]):.3f}**" for r in rules) + " | |")


if __name__ == "__main__":
    main()
