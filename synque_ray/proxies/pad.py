"""PAD: proxy A-distance, how easily a classifier tells candidate from real rows.

PAD = 1 − 2ε, ε the error of the predicted probability: 1 for separable sets, about 0
for indistinguishable ones. By default every row gets an out-of-fold probability from
stratified k-fold cross-fitting (a 30-row U_r keeps all 30 rows in the estimate, not
the 6 of a 20% holdout), and ε is class-balanced, the mean of the two classes' mean
errors: the unbalanced error of one distribution is about 1 − 4π(1 − π) below chance
for a candidate holding a share π of the rows, so size alone would move the score.
The paper's PAD is `folds=0, holdout=0.2, balanced=False`. The out-of-fold
probabilities are kept: they say which of the candidate's rows look synthetic.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, check_embeddings, resample_weights

# The boosted trees are sized for cross-fitting: k fits must cost about what one
# default fit did (BENCHMARKS.md, PAD cost/quality): coarse histogram bins, fewer,
# shallower trees, and rows and columns subsampled per tree.
XGBOOST = {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.2, "max_bin": 32, "tree_method": "hist",
           "subsample": 0.8, "colsample_bytree": 0.5, "n_jobs": 1}


class PadParams(Params):
    classifier: Literal["xgboost", "logistic"] = "xgboost"
    folds: int = Field(5, ge=0)  # 0: one stratified holdout (the paper's)
    holdout: float = Field(0.2, gt=0, lt=1)  # used when folds is 0
    balanced: bool = True

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

    min_real_rows = min_rows


def _classifier(name: str, seed: int):
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=seed, **XGBOOST)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000, random_state=seed)
    raise ValueError(f"unknown PAD classifier {name!r}; use 'xgboost' or 'logistic'")


def min_rows_for_holdout(holdout: float) -> int:
    """Rows one side needs so that a stratified split leaves it at least one row on each side."""
    return max(2, int(np.ceil(1.0 / min(holdout, 1.0 - holdout) - 1e-9)))


def pad_probabilities(synthetic: np.ndarray, real: np.ndarray, classifier: str = "xgboost", folds: int = 5,
                      holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """P(synthetic) for every row of synthetic (n, d) then real (m, d), and the labels (1 = synthetic).

    With folds > 0 each row's probability comes from the model that did not see it; with
    folds = 0 only the stratified holdout is predicted and the other rows are NaN.
    """
    synthetic, real = check_embeddings(synthetic, real)
    features = np.vstack([synthetic, real])
    labels = np.concatenate([np.ones(len(synthetic)), np.zeros(len(real))])
    probability = np.full(len(labels), np.nan)
    from sklearn.model_selection import StratifiedKFold, train_test_split  # here: a config load need not import it

    if folds:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels)
    else:
        splits = [train_test_split(np.arange(len(labels)), test_size=holdout, stratify=labels, random_state=seed)]
    for train, test in splits:
        model = _classifier(classifier, seed).fit(features[train], labels[train])
        probability[test] = model.predict_proba(features[test])[:, 1]
    return probability, labels


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


def pad(synthetic: np.ndarray, real: np.ndarray, classifier: str = "xgboost", holdout: float = 0.2, seed: int = 0,
        folds: int = 5, balanced: bool = True) -> float:
    """PAD between synthetic (n, d) and real (m, d) embeddings: 1 separable, about 0 the same."""
    probability, labels = pad_probabilities(synthetic, real, classifier, folds, holdout, seed)
    return pad_from_probabilities(probability, labels, balanced)


def _class_weights(labels: np.ndarray, known: np.ndarray, resamples: int, rng) -> np.ndarray:
    """Shape (resamples, n + m): each class's predicted rows resampled on their own, so every
    resample keeps both classes at their sizes."""
    weights = np.zeros((resamples, len(labels)))
    for value in (1.0, 0.0):
        rows = np.flatnonzero((labels == value) & known)
        weights[:, rows] = resample_weights(len(rows), resamples, rng)
    return weights


def _compute(synthetic, real, params: PadParams, seed: int, resamples: int) -> ProxyOutput:
    probability, labels = pad_probabilities(synthetic, real, params.classifier, params.folds, params.holdout, seed)
    weights = _class_weights(labels, ~np.isnan(probability), resamples, np.random.default_rng(seed))
    replicates = np.array([pad_from_probabilities(probability, labels, params.balanced, w) for w in weights])
    value = pad_from_probabilities(probability, labels, params.balanced)
    return ProxyOutput(value, replicates, {"p_synthetic": probability[: len(synthetic)]})


PROXY = Proxy("pad", PadParams, orientation=-1.0, compute=_compute)
