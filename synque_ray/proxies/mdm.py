"""MDM: mean distance to medoid, a diversity measure of the candidate alone.

A candidate whose rows collapse onto a few modes has small within-cluster spread;
the SynQuE paper finds that spread tracks downstream quality. It does not look at
U_r, so it is computed once per candidate with a fixed FasterPAM start.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from synque_ray.proxies.base import Params, Proxy, ProxyOutput, centred, check_embeddings, resample_weights

FIXED_START = 0  # FasterPAM's random_state: the same medoids for a candidate on every run


class MdmParams(Params):
    k: int = Field(3, gt=0)

    def min_rows(self) -> tuple[int, str]:
        return self.k, f"mdm.k = {self.k}"


def medoid_distances(embeddings: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """FasterPAM with k medoids: (distance of each row to its medoid, cluster label of each row), each (n,)."""
    embeddings, _ = check_embeddings(embeddings)
    if len(embeddings) < k:
        raise ValueError(f"MDM needs at least k={k} rows, got {len(embeddings)}")
    import kmedoids  # here, not at the top: a config load need not import it
    from scipy.spatial.distance import cdist

    distances = cdist(embeddings, embeddings, metric="euclidean")
    result = kmedoids.fasterpam(distances, k, random_state=FIXED_START, n_cpu=1)
    labels = np.asarray(result.labels)
    medoids = np.asarray(result.medoids)
    return distances[np.arange(len(labels)), medoids[labels]], labels


def mdm_from_distances(distance: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over clusters of the (weighted) mean distance to the medoid; empty clusters are left out."""
    weights = np.ones_like(distance) if weights is None else weights
    means = [np.average(distance[labels == c], weights=weights[labels == c])
             for c in np.unique(labels) if weights[labels == c].sum() > 0]
    return float(np.mean(means))


def mdm(embeddings: np.ndarray, k: int = 3) -> float:
    """Mean over the k FasterPAM clusters of the mean Euclidean distance to the medoid. Shape (n, d) → float."""
    return mdm_from_distances(*medoid_distances(embeddings, k))


def _compute(synthetic, real, params: MdmParams, seed: int, resamples: int) -> ProxyOutput:
    distance, labels = medoid_distances(synthetic, params.k)
    weights = resample_weights(len(distance), resamples, np.random.default_rng(seed))
    replicates = np.array([mdm_from_distances(distance, labels, w) for w in weights])
    value = mdm_from_distances(distance, labels)
    return ProxyOutput(value, centred(replicates, value))


LEGEND = ("Mean distance of the candidate's rows to their cluster medoid (k-medoids on the embeddings): how "
          "spread out the candidate is; higher is better. It never looks at U_r, so a varied but off-topic "
          "candidate scores well: trust it only among candidates that are all on the task.")
PROXY = Proxy("mdm", MdmParams, orientation=1.0, compute=_compute, uses_real=False, title="MDM", default=True,
              legend=LEGEND)
