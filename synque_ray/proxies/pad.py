"""PAD: proxy A-distance, how easily a classifier tells candidate from real rows.

PAD = 1 - 2ε with ε the mean absolute error of the predicted probability on a
stratified holdout: 1 for perfectly separable sets, about 0 for indistinguishable.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def _classifier(name: str, seed: int):
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=seed, n_jobs=1)
    if name == "logistic":
        return LogisticRegression(max_iter=1000, random_state=seed)
    raise ValueError(f"unknown PAD classifier {name!r}; use 'xgboost' or 'logistic'")


def min_rows_for_holdout(holdout: float) -> int:
    """Rows one side needs so that a stratified split leaves it at least one row on each side."""
    return max(2, int(np.ceil(1.0 / min(holdout, 1.0 - holdout) - 1e-9)))


def pad(
    synthetic: np.ndarray,
    real: np.ndarray,
    classifier: str = "xgboost",
    holdout: float = 0.2,
    seed: int = 0,
) -> float:
    features = np.vstack([synthetic, real])
    labels = np.concatenate([np.ones(len(synthetic)), np.zeros(len(real))])
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=holdout, stratify=labels, random_state=seed
    )
    model = _classifier(classifier, seed).fit(x_train, y_train)
    probability = model.predict_proba(x_test)[:, 1]
    error = float(np.mean(np.abs(probability - y_test)))
    return 1.0 - 2.0 * error
