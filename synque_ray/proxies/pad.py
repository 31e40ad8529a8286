"""PAD: proxy A-distance, how easily a classifier tells candidate from real rows.

PAD = 1 − 2ε, ε the error of the predicted probability: 1 for separable sets (about 1 −
`gate_rate` under the support gate, below), about 0 for indistinguishable ones. By default
every row gets an out-of-fold probability from stratified k-fold cross-fitting (a 30-row U_r
keeps all 30 rows in the estimate, not the 6 of a 20% holdout), and everything is
class-balanced, so a candidate's size buys it nothing:

- the probabilities are *balanced*, as if both classes had equal size: a classifier fit
  on a fold with a share π of candidate rows learns the prior π, so its log-odds are
  shifted by −logit(π) (Bayes' rule with the prior ½ in place of π). Left in, that prior
  makes a 1,000-row candidate's rows read p ≈ .97 against a 30-row U_r even when the two
  cannot be told apart, and the real rows' error grows with the candidate's size;
- ε is the mean of the two classes' mean errors: the unbalanced error of one
  distribution is about 1 − 4π(1 − π) below chance.

A classifier's power to separate two distributions grows with the rows it is trained on,
so class balance alone does not make PAD compare across sizes when the distributions
*differ*: on the sentiment headlines (MiniLM, a 100-row U_r) one generator's balanced PAD
read .31 / .44 / .51 at 30 / 100 / 300 rows on every training row, .22 / .22 / .22 at 24
per side (BENCHMARKS.md, "PAD at one training size per run"). So every model is trained
on the same number of rows per side for every candidate of a run (`train_rows`): in each
fold, `TRAIN_REPEATS` models, each on a seeded draw of that many rows from each side of
the fold's training rows inside the support gate (below), their probabilities on the fold's
held-out rows averaged. PAD
then measures how well a classifier trained on `train_rows` rows per side tells the
candidate from U_r: a property of the two distributions at a fixed training budget, the
same at any candidate size; a larger candidate only narrows its spread (more held-out
rows). `train_rows: auto` is the largest size every candidate and U_r sample of the run
can give inside the gate (`PadParams.for_run`), resolved once per run before any PAD is computed.

Every model reads a row outside the support of the split's U_r training rows as synthetic, and
leaves the training rows outside it out of the fit (`support_gate`). The support is read from all
of the split's U_r training rows, not from a model's `train_rows` draw of them: it is a property of
U_r alone, the same for every candidate of a run, so it needs no fixed size to be fair, and a draw of
a few dozen U_r rows reads it coarsely and differently in each repeat. The logistic model alone read
off-topic rows as real, since a real sample is more varied than a generator's and such rows lie
nearer its outskirts (BENCHMARKS.md, "PAD and rows outside U_r"). Outside means farther from
its k nearest U_r rows, on average, than all but a share `gate_rate` of U_r's own rows are from
theirs (`outside_support`): calibrated on U_r, so under a tie a held-out U_r row and a
candidate row are outside equally often, and reaching into U_r's outskirts, where off-topic
rows that lean towards U_r's topic lie (BENCHMARKS.md, "PAD's gate as a quantile of U_r's own
k-NN distances"). Its price: about that share of U_r's own held-out rows reads as synthetic, so
separable sets read about 1 − `gate_rate`, the same ceiling for every candidate. PAD's
replicates resample the rows of the fitted models' probabilities, widened to the spread of
refits of the whole cross-fit under random row weights (`refit_spread`): a fresh sample moves
the models, not only the held-out rows.

The default classifier is a logistic regression. On 16-d Gaussians with a 30-row U_r
(BENCHMARKS.md, "PAD fair to size") its balanced PAD of a 2 sd shift reads .52–.53 from
30 to 1,000 candidate rows; the boosted trees' reads .44–.53, and for one distribution
at 1,000 vs 30 rows their balanced p_synthetic still has a median of .86: trees carve
the few U_r rows out as small regions, so an unseen row of either class lands in the
candidate's, and no correction of the prior undoes that (balanced sample weights did worse in a trial:
.47 → .21). The paper's PAD is
`classifier: xgboost, folds: 0, holdout: 0.2, balanced: false, train_rows: all, support_gate: false`. The balanced
out-of-fold probabilities are kept as the row signal `p_synthetic`: which of the
candidate's rows look synthetic, on one scale at any size (½ = no evidence either way).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, Self

import numpy as np
import polars as pl
from pydantic import Field, StrictInt, field_validator

from synque_ray.proxies.base import (Params, Proxy, ProxyOutput, centred, check_embeddings, resample_weights,
                                     split_rngs)
from synque_ray.rowsignals import Signal

# The boosted trees are sized for cross-fitting: k fits must cost about what one
# default fit did (BENCHMARKS.md, PAD cost/quality): coarse histogram bins, fewer,
# shallower trees, and rows and columns subsampled per tree.
XGBOOST = {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.2, "max_bin": 32, "tree_method": "hist",
           "subsample": 0.8, "colsample_bytree": 0.5, "n_jobs": 1}


def _xgboost(seed: int):
    from xgboost import XGBClassifier  # imported lazily: only runs that ask for it pay its import

    return XGBClassifier(random_state=seed, **XGBOOST)


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression  # here: a config load need not import it

    return LogisticRegression(max_iter=1000, random_state=seed)


CLASSIFIERS = {"xgboost": _xgboost, "logistic": _logistic}  # name → an unfitted classifier for a seed
# Models per fold under a fixed training size, each on its own draw of rows, their probabilities
# averaged: one draw of a few dozen rows per side leaves a row's probability to chance.
TRAIN_REPEATS = 5
# The refits' row weights are Gamma(WEIGHT_SHAPE) draws scaled to mean 1, variance 1 / WEIGHT_SHAPE:
# how hard a refit shakes the rows, set by simulation (`refit_spread`).
WEIGHT_SHAPE = 2.0
# The support gate's rate: the chance that a fresh row of U_r's own distribution (a held-out U_r row,
# or a candidate's row under a tie) reads as outside. A choice among .1 / .15 / .2 (BENCHMARKS.md, "PAD's
# gate as a quantile"), not derived: at .1 most 30-row candidates with 10% off-topic docs sentences
# still read closer to U_r than a clean 300-row one; .2 reads a fifth of U_r's own rows as synthetic,
# an error each, and lowers every PAD further.
GATE_RATE = 0.15
TrainRows = Literal["auto", "all"] | Annotated[StrictInt, Field(ge=1)]


class PadParams(Params):
    """train_rows: rows per side each model is fit on, drawn from the side's training rows inside the
    support gate (a side with fewer inside fits on all it has). An int: that many for every candidate;
    `auto`: the largest size the run's smallest candidate and smallest U_r sample can both give
    in every split, inside the gate (`fixed_train_rows`), resolved once per run (`for_run`);
    `all`: every training row of the fold (the paper's, and PAD before a run-wide size: its power,
    and so its value, then grows with the candidate's size). A candidate that cannot give
    `train_rows` training rows per side in every split (possible only with an int, or a candidate
    scored outside its run) is a recorded failure of PAD for that candidate, never scored on
    fewer; a U_r sample that cannot is refused when the run is read (`min_real_rows`), since
    every candidate would fail."""

    classifier: Literal["logistic", "xgboost"] = "logistic"
    folds: int = Field(5, ge=0)  # 0: one stratified holdout (the paper's)
    holdout: float = Field(0.2, gt=0, lt=1)  # used when folds is 0
    balanced: bool = True  # balanced probabilities and error; false: the paper's raw ones (under an
    #                        int train_rows the classes are equal in training: only the error is plain)
    train_rows: TrainRows = "auto"
    support_gate: bool = True  # rows outside U_r's support read as synthetic (`outside_support`); false: the
    #                            classifier alone (the paper's)
    gate_rate: float = Field(GATE_RATE, gt=0, lt=1)  # the share of U_r's own rows the gate reads as outside
    refits: int = Field(8, ge=2)  # refits of the whole cross-fit that size the replicates (`refit_spread`)

    @field_validator("train_rows", mode="before")
    @classmethod
    def _train_rows(cls, value: object) -> object:
        """One readable line for every value the union would refuse branch by branch."""
        if value in ("auto", "all") or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be auto, all or a number of rows per side (at least 1), got {value!r}")

    @field_validator("folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:  # one fold trains on nothing: PAD would fail on every candidate
            raise ValueError("must be 0 (one holdout) or at least 2 (cross-fitting), got 1")
        return value

    def min_rows(self) -> tuple[int, str]:
        if self.folds:
            return max(2, self.folds), f"PAD's {self.folds} folds"
        return min_rows_for_holdout(self.holdout), f"PAD's {self.holdout:g} holdout"

    def min_real_rows(self) -> tuple[int, str]:
        """A U_r sample needs as many rows as a candidate, and an int `train_rows` per side in every split."""
        least, why = self.min_rows()
        if isinstance(self.train_rows, int):
            needed = rows_for_training(self.train_rows, self.folds, self.holdout)
            if needed > least:
                return needed, f"{why} with pad.train_rows {self.train_rows}"
        return least, why

    def for_run(self, candidate_rows: Iterable[int], real_rows: Iterable[int]) -> Self:
        """`train_rows: auto` resolved from the run's sizes (rows each candidate is scored on, rows
        of each U_r sample): the fewest training rows any of them keeps in a split
        (`training_rows`), less the gate's share (`fixed_train_rows`), so every candidate is fit on the
        same number per side. Other values are returned as they are. Called once per run, before any
        PAD, so that the resolved value is part of the parameters that key the results."""
        sizes = [*candidate_rows, *real_rows]
        if self.train_rows != "auto" or not sizes:
            return self
        return self.model_copy(update={"train_rows": fixed_train_rows(sizes, self.folds, self.holdout, self.gate)})

    @property
    def gate(self) -> float | None:
        """The support gate's rate, None when the gate is off."""
        return self.gate_rate if self.support_gate else None


def training_rows(rows: int, folds: int, holdout: float) -> int:
    """The fewest training rows a side of `rows` rows keeps in any split of PAD (at least 1).

    k folds (sklearn's StratifiedKFold): a class's held-out share of a fold is at most
    ceil(rows / k), so rows − ceil(rows / k). One holdout (train_test_split, stratified): the
    class keeps at least floor((1 − holdout) · rows) − 1, whatever the other class's size."""
    if folds:
        return max(1, rows - -(-rows // folds))
    return max(1, int(np.floor((1.0 - holdout) * rows + 1e-9)) - 1)


def rows_for_training(train_rows: int, folds: int, holdout: float) -> int:
    """The fewest rows a side needs to keep `train_rows` training rows in every split."""
    rows = train_rows
    while training_rows(rows, folds, holdout) < train_rows:
        rows += 1
    return rows


def fixed_train_rows(sizes: Iterable[int], folds: int, holdout: float, gate_rate: float | None = None) -> int:
    """`train_rows: auto` for sides of these sizes (every candidate's and U_r sample's rows): the
    largest training size each of them can give in every split; under the support gate at `gate_rate`,
    the ⌊(1 − rate) · t⌋ of those t rows a side keeps inside it (U_r always: the gate's reach is the
    ⌈(1 − rate)(t + 1)⌉-th of its own rows; a candidate of U_r's distribution about as many).

    Why the gate's share: the gate leaves the rows outside it out of the fit, so a side with more of
    them fits on fewer. Counted before the gate, the run's smallest candidate with 3 off-topic rows
    in 30 fit on about 21 rows per side against a clean candidate's 24, a weaker classifier that hid
    half of what the off-topic rows cost it (BENCHMARKS.md, "PAD fit on the same number of rows
    inside the gate")."""
    fewest = min(training_rows(size, folds, holdout) for size in sizes)
    return fewest if gate_rate is None else max(1, int(np.floor((1.0 - gate_rate) * fewest + 1e-9)))


def min_rows_for_holdout(holdout: float) -> int:
    """Rows one side needs so that a stratified split leaves it at least one row on each side."""
    return max(2, int(np.ceil(1.0 / min(holdout, 1.0 - holdout) - 1e-9)))


def balanced_probability(probability: np.ndarray, share: float) -> np.ndarray:
    """P(synthetic) (any shape) from a model trained with a share `share` of synthetic rows,
    rewritten as if the two classes had been equal in size: log-odds − logit(share).
    Exact for a calibrated model; 0 and 1 stay 0 and 1."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the synthetic share of the training rows must be in (0, 1), got {share}")
    p = np.asarray(probability, dtype=np.float64)
    # odds × (1 − share) / share, written so that p = 0 and p = 1 need no infinite log-odds
    return p * (1.0 - share) / (p * (1.0 - share) + (1.0 - p) * share)


def pad_probabilities(synthetic: np.ndarray, real: np.ndarray, classifier: str = "logistic", folds: int = 5,
                      holdout: float = 0.2, seed: int = 0, balanced: bool = True,
                      train_rows: int | None = None, weights: np.ndarray | None = None,
                      support_gate: bool = True, gate_rate: float = GATE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """P(synthetic) for every row of synthetic (n, d) then real (m, d), and the labels (1 = synthetic).

    With folds > 0 each row's probability comes from models that did not see it; with
    folds = 0 only the stratified holdout is predicted and the other rows are NaN.
    train_rows None: one model per split on all its training rows; balanced: its probabilities
    corrected for the training rows' class shares (`balanced_probability`), so they read as if
    both classes had equal size. train_rows t: per split, `TRAIN_REPEATS` models, each on t rows
    drawn from each side's training rows inside the gate (`_fixed_size_fold`; one generator seeded
    by `seed`, drawn fold by fold, repeat by repeat, candidate side then U_r side), their balanced
    probabilities averaged. Raises ValueError when a side has fewer than t training rows in a split.
    `weights` (n + m,), positive: each row's weight in the fits (a refit under resampling weights,
    `refit_spread`); None: 1 each.
    support_gate: every model reads rows outside U_r's support as synthetic (`_support`), U_r's
    own rows outside it at the rate `gate_rate`.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown PAD classifier {classifier!r}; use one of {sorted(CLASSIFIERS)}")
    synthetic, real = check_embeddings(synthetic, real)
    features = np.vstack([synthetic, real])
    labels = np.concatenate([np.ones(len(synthetic)), np.zeros(len(real))])
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != labels.shape or not (weights > 0).all():
        raise ValueError(f"PAD's row weights must be {len(labels)} positive numbers")
    probability = np.full(len(labels), np.nan)
    from sklearn.model_selection import StratifiedKFold, train_test_split  # here: a config load need not import it

    if folds:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels)
    else:
        splits = [train_test_split(np.arange(len(labels)), test_size=holdout, stratify=labels, random_state=seed)]
    rng = np.random.default_rng(seed)
    from threadpoolctl import threadpool_limits  # sklearn's own dependency

    gate = gate_rate if support_gate else None  # the models' gate: None reads no support
    # One BLAS/OpenMP thread: the fits are small (2 × train_rows rows), and threads cost more than
    # they save there: 57 vs 6 ms of CPU per 48-row fit on the loaded 2-core machine (BENCHMARKS.md).
    with threadpool_limits(1):
        for train, test in splits:
            if train_rows is None:
                predicted = _fit_predict(features, labels, weights, train, test, classifier, seed, gate)
                share = float(np.average(labels[train], weights=weights[train]))
                probability[test] = balanced_probability(predicted, share) if balanced else predicted
                continue
            probability[test] = _fixed_size_fold(features, labels, weights, train, test, classifier, seed, train_rows,
                                                 rng, gate)
    return probability, labels


def _fit_predict(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, train: np.ndarray, test: np.ndarray,
                 classifier: str, seed: int, gate_rate: float | None = GATE_RATE) -> np.ndarray:
    """Shape (len(test),): P(synthetic) of the test rows from one model fit on the train rows (indices
    into features (rows, d), labels and weights (rows,)), under the train rows' class shares, with the
    support gate read from the train rows' U_r side (`_support`; None: no gate): the test rows outside
    it read 1, and the model is fit on the train rows inside it (on all of them when none of the
    candidate's is inside)."""
    outside, inside = _support(features, labels, train, test, gate_rate)
    fit_rows = train[inside] if (labels[train[inside]] == 1.0).any() else train
    return np.where(outside, 1.0, _fit(features, labels, weights, train, fit_rows, test, classifier, seed))


def _support(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
             gate_rate: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(test rows outside (len(test),) bool, train rows inside (len(train),) bool): the support gate of a
    split, read from the U_r rows among `train` (`outside_support` at `gate_rate`), U_r's own rows
    each measured against the others; gate_rate None: no gate, nothing outside.

    Why a gate: a linear model on a few dozen rows per side learns the direction between the two
    sides' centres; rows unlike anything in U_r (off-topic ones) lie nearer U_r's more varied
    outskirts than the candidate's centre, so trained on they tilt that direction towards U_r's own
    outliers and held out they read as real (BENCHMARKS.md, "PAD and rows outside U_r"). A test row
    outside then reads 1, and the train rows outside, of either side, leave the fit, so that under
    a tie it sees one distribution's inside on both sides; a held-out candidate row and a held-out
    U_r row are then equally likely to be outside, and PAD stays about 0."""
    if gate_rate is None:
        return np.zeros(len(test), dtype=bool), np.ones(len(train), dtype=bool)
    is_real = labels[train] == 0.0
    real, candidate = train[is_real], train[~is_real]
    outside, real_outside = outside_support(features[real], features[np.concatenate([test, candidate])], gate_rate)
    inside = np.ones(len(train), dtype=bool)
    inside[is_real] = ~real_outside
    inside[~is_real] = ~outside[len(test):]
    return outside[: len(test)], inside


def _fit(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, train: np.ndarray, fit_rows: np.ndarray,
         test: np.ndarray, classifier: str, seed: int) -> np.ndarray:
    """Shape (len(test),): P(synthetic) of the test rows from a model fit on `fit_rows`, a subset of
    the train rows, rebased to the train rows' class shares when the subset's differ."""
    model = CLASSIFIERS[classifier](seed).fit(features[fit_rows], labels[fit_rows], sample_weight=weights[fit_rows])
    predicted = model.predict_proba(features[test])[:, 1]
    if len(fit_rows) < len(train):  # the fit's prior back to the train rows' shares
        share = float(np.average(labels[train], weights=weights[train]))
        kept = float(np.average(labels[fit_rows], weights=weights[fit_rows]))
        predicted = balanced_probability(balanced_probability(predicted, kept), 1.0 - share)
    return predicted


def outside_support(real: np.ndarray, rows: np.ndarray, rate: float = GATE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(rows outside (len(rows),) bool, U_r rows outside (t,) bool): rows (k, d) and U_r rows `real`
    (t, d), t ≥ 2, farther from their `support_neighbours(t)` nearest U_r rows, on average
    (Euclidean; the cosine's order on unit-norm embeddings), than the 1 − rate quantile of the same
    distance for U_r's own rows, each measured against its t − 1 others.

    A row is measured against t − 1 U_r rows too (all but the last), so that a fresh row of U_r's
    distribution, a candidate's under a tie included, is outside at about the rate, as a U_r row
    is: what reads as outside beyond that is evidence. Why the mean over k neighbours and not the
    nearest alone: a real sample is varied, and a row that leans towards U_r's topic often has one
    U_r row near it by chance; the mean of several is steadier, so U_r's own outskirts and rows
    unlike it separate better (BENCHMARKS.md, "PAD's gate as a quantile of U_r's own k-NN
    distances"). Fewer than 2 U_r rows measure no support: nothing is outside."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"the support gate's rate must be in (0, 1), got {rate}")
    if len(real) < 2:
        return np.zeros(len(rows), dtype=bool), np.zeros(len(real), dtype=bool)
    neighbours = support_neighbours(len(real))
    within = _distances(real, real)
    np.fill_diagonal(within, np.inf)
    own = _nearest_mean(within, neighbours)
    rank = int(np.ceil((1.0 - rate) * (len(real) + 1)))  # conformal: a fresh row exceeds the rank-th of t
    reach = float(np.sort(own)[rank - 1]) if rank <= len(real) else np.inf  # values with chance ≤ rate
    return _nearest_mean(_distances(rows, real[:-1]), neighbours) > reach, own > reach


def support_neighbours(real_rows: int) -> int:
    """The gate's k for t U_r rows: ⌈√t⌉, at most t − 1 (the others a U_r row has). It grows with
    the sample, as a k-NN estimate's k should, so that a larger U_r reads its support more steadily."""
    return max(1, min(real_rows - 1, int(np.ceil(np.sqrt(real_rows)))))


def _nearest_mean(distances: np.ndarray, k: int) -> np.ndarray:
    """Shape (rows,): the mean of each row's k smallest distances (rows, columns ≥ k)."""
    return np.partition(distances, k - 1, axis=1)[:, :k].mean(axis=1)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shape (len(a), len(b)): Euclidean distances between the rows of a and of b."""
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _fixed_size_fold(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, train: np.ndarray,
                     test: np.ndarray, classifier: str, seed: int, train_rows: int,
                     rng: np.random.Generator, gate_rate: float | None = GATE_RATE) -> np.ndarray:
    """Shape (len(test),): the mean balanced P(synthetic) of `TRAIN_REPEATS` models, each fit on
    `train_rows` rows drawn from each side of `train` (candidate side first). Averaging probabilities
    averages the models' errors exactly (|p − y| is linear in p for y in {0, 1}), so PAD is the mean
    PAD of single models at that training size: repeating only narrows its spread.

    The support gate (gate_rate not None) is read once, from every U_r row of `train` (`_support`):
    it is a property of U_r alone, so it needs no fixed size, and every model then reads the same
    rows as outside. The rows are drawn from each side's rows inside it, so that the fixed size is
    the number each model is fit on: a side with more rows outside (off-topic ones) is not fit on
    fewer. A side with fewer than `train_rows` inside fits on all of them (every row, when none of
    the candidate's is inside)."""
    sides = [train[labels[train] == value] for value in (1.0, 0.0)]
    if min(len(side) for side in sides) < train_rows:
        raise ValueError(f"{int(labels.sum())} candidate and {int((labels == 0).sum())} real rows leave "
                         f"{'/'.join(str(len(side)) for side in sides)} training rows per side in a split, "
                         f"fewer than pad.train_rows {train_rows}")
    outside, inside = _support(features, labels, train, test, gate_rate)
    kept = np.zeros(len(labels), dtype=bool)
    kept[train[inside]] = True
    pools = [side[kept[side]] if kept[side].any() else side for side in sides]
    total = np.zeros(len(test))
    for _ in range(TRAIN_REPEATS):
        drawn = np.concatenate([rng.choice(pool, size=min(train_rows, len(pool)), replace=False) for pool in pools])
        share = float(np.average(labels[drawn], weights=weights[drawn]))  # ½ unless a side fell short
        predicted = balanced_probability(_fit(features, labels, weights, drawn, drawn, test, classifier, seed), share)
        total += np.where(outside, 1.0, predicted)
    return total / TRAIN_REPEATS


def pad_from_probabilities(probability: np.ndarray, labels: np.ndarray, balanced: bool = True,
                           weights: np.ndarray | None = None) -> float:
    """1 − 2ε over the rows that have a probability; ε balanced (mean of per-class errors) or plain.

    `weights` (n + m,) counts each row (a bootstrap resample); NaN probabilities are left out.
    """
    weights = np.ones_like(probability) if weights is None else weights
    known = ~np.isnan(probability)
    error, weights, labels = np.abs(probability[known] - labels[known]), weights[known], labels[known]
    if not balanced:
        return 1.0 - 2.0 * float(np.average(error, weights=weights))
    per_class = [np.average(error[labels == c], weights=weights[labels == c]) for c in (1.0, 0.0)]
    return 1.0 - 2.0 * float(np.mean(per_class))


def resolved_train_rows(train_rows: TrainRows, rows: int, real_rows: int, folds: int, holdout: float,
                        gate_rate: float | None) -> int | None:
    """`pad_probabilities`' train_rows for one pair: None for `all`; `auto` (left unresolved by a
    run, as when PAD is computed on one pair alone) from this pair's own sizes, under the gate at
    `gate_rate` (None: no gate)."""
    if train_rows == "all":
        return None
    if train_rows == "auto":
        return fixed_train_rows([rows, real_rows], folds, holdout, gate_rate)
    return train_rows


def pad(synthetic: np.ndarray, real: np.ndarray, classifier: str = "logistic", holdout: float = 0.2, seed: int = 0,
        folds: int = 5, balanced: bool = True, train_rows: TrainRows = "auto", support_gate: bool = True,
        gate_rate: float = GATE_RATE) -> float:
    """PAD between synthetic (n, d) and real (m, d) embeddings: 1 separable (about 1 − gate_rate with the
    gate), about 0 the same."""
    fixed = resolved_train_rows(train_rows, len(synthetic), len(real), folds, holdout,
                                gate_rate if support_gate else None)
    probability, labels = pad_probabilities(synthetic, real, classifier, folds, holdout, seed, balanced, fixed,
                                            support_gate=support_gate, gate_rate=gate_rate)
    return pad_from_probabilities(probability, labels, balanced)


def _class_weights(labels: np.ndarray, known: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Shape (resamples, n + m): each class's predicted rows resampled on their own, so every
    resample keeps both classes at their sizes; U_r's rows from the seed's stream and the
    candidate's from the candidate stream (`split_rngs`: every candidate of a seed shares U_r's
    draws, a candidate's own draws are the same in every seed)."""
    weights = np.zeros((resamples, len(labels)))
    for value, rng in zip((0.0, 1.0), split_rngs(seed), strict=True):
        rows = np.flatnonzero((labels == value) & known)
        weights[:, rows] = resample_weights(len(rows), resamples, rng)
    return weights


def refit_spread(synthetic: np.ndarray, real: np.ndarray, params: PadParams, train_rows: int | None,
                 seed: int) -> float:
    """How far PAD moves over fresh samples: the sd (ddof 1) of PAD over `params.refits` refits of
    the whole cross-fit, each with its own folds and training draws and under random row weights
    that weigh every row both in the fits and in the error.

    Why refits: PAD's error is a mean over rows, but every row's probability comes from models fit
    on the other rows; a fresh sample changes the models as well as the held-out rows, and a worse
    model moves every row's error the same way. Resampling the rows of fixed fits misses that
    shared part (0.55–0.84 of the true sd, BENCHMARKS.md). Why weights: a resample with
    replacement would train on a copy of a row it also holds out, and leave some folds short of
    the run-wide training size per side; weights keep every row once. How strong: Gamma(2)
    weights (variance ½), set by simulation, not derived. Reweighted fits move PAD more than
    fresh samples do (16-d Gaussians, one distribution, 40 × 60 rows: Gamma(2) weights alone, the
    folds kept, move it by sd .072 against a true sd of .038), so weights of variance 1 (Exp(1),
    the Bayesian bootstrap) read 1.0–1.8 times the true sd; variance ½ reads 0.84–1.32 over one
    distribution and a shifted one at 40 to 300 candidate and 60 to 200 U_r rows (BENCHMARKS.md,
    "PAD and rows outside U_r"). U_r's weights and the splits come from the seed's stream, the
    candidate's weights from the candidate stream (`split_rngs`)."""
    real_rng, candidate_rng = split_rngs(seed)
    values = []
    for _ in range(params.refits):
        weights = np.concatenate([candidate_rng.gamma(WEIGHT_SHAPE, size=len(synthetic)),
                                  real_rng.gamma(WEIGHT_SHAPE, size=len(real))])
        labels = np.concatenate([np.ones(len(synthetic)), np.zeros(len(real))])
        for value in (0.0, 1.0):
            weights[labels == value] /= weights[labels == value].mean()
        probability, labels = pad_probabilities(synthetic, real, params.classifier, params.folds, params.holdout,
                                                int(real_rng.integers(2**31)), params.balanced, train_rows, weights,
                                                params.support_gate, params.gate_rate)
        values.append(pad_from_probabilities(probability, labels, params.balanced, weights))
    return float(np.std(values, ddof=1))


def _compute(synthetic, real, params: PadParams, seed: int, resamples: int) -> ProxyOutput:
    fixed = resolved_train_rows(params.train_rows, len(synthetic), len(real), params.folds, params.holdout,
                                params.gate)
    probability, labels = pad_probabilities(synthetic, real, params.classifier, params.folds, params.holdout, seed,
                                            params.balanced, fixed, support_gate=params.support_gate,
                                            gate_rate=params.gate_rate)
    value = pad_from_probabilities(probability, labels, params.balanced)
    row_signal = probability[: len(synthetic)]
    if fixed is None and not params.balanced:  # the paper's raw probabilities score it; the row signal is balanced
        row_signal = balanced_probability(row_signal, labels.mean())
    return ProxyOutput(value, replicates(synthetic, real, params, fixed, seed, resamples, probability),
                       {P_SYNTHETIC.name: row_signal})


def replicates(synthetic: np.ndarray, real: np.ndarray, params: PadParams, train_rows: int | None, seed: int,
               resamples: int, probability: np.ndarray) -> np.ndarray:
    """Shape (resamples,): PAD's replicates, centred on its value. The rows of the fitted models'
    out-of-fold `probability` (n + m,) resampled within each class (`_class_weights`), their
    deviations from the value widened by the ratio of `refit_spread` (refits: the models' own
    variation included) to their own sd, so their spread is the refits' and their shape the rows'.
    Empty when resamples is 0 (no refit is paid for)."""
    if not resamples:
        return np.empty(0)
    labels = np.concatenate([np.ones(len(synthetic)), np.zeros(len(real))])
    value = pad_from_probabilities(probability, labels, params.balanced)
    weights = _class_weights(labels, ~np.isnan(probability), resamples, seed)
    rows = centred(np.array([pad_from_probabilities(probability, labels, params.balanced, w) for w in weights]), value)
    spread = float(np.std(rows))
    if spread == 0.0:  # every row's error the same: nothing to widen
        return rows
    return value + (rows - value) * refit_spread(synthetic, real, params, train_rows, seed) / spread


P_SYNTHETIC = Signal("p_synthetic", pl.Float64, "p synthetic (PAD)",
                     "the classifier's out-of-fold, class-balanced probability that the row is synthetic: "
                     "high = looks synthetic", shown=True)
LEGEND = ("Proxy A-distance (score = −PAD): how well a classifier tells the candidate's rows from U_r's; the "
          "harder, the better. It needs tens of rows on each side, and with a small U_r its rank swings between"
          " seeds (look at the interval).")
PROXY = Proxy("pad", PadParams, orientation=-1.0, compute=_compute, signals=(P_SYNTHETIC,), title="PAD",
              legend=LEGEND, default=True)
