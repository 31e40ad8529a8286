"""The report's projections: small SVDs on one BLAS thread, reused while the
candidate's and U_r's embeddings are unchanged."""

import numpy as np
from threadpoolctl import threadpool_info

from synque_ray.report import load, view


def test_the_projection_decomposition_runs_on_one_blas_thread(monkeypatch):
    threads, real_eigh = [], np.linalg.eigh

    def spy(*args, **kwargs):
        threads.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real_eigh(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigh", spy)
    rng = np.random.default_rng(0)
    candidate_xy, real_xy, explained = view.pca_2d(rng.normal(size=(50, 16)), rng.normal(size=(40, 16)))
    assert threads == [{1}]
    assert candidate_xy.shape == (50, 2) and real_xy.shape == (40, 2) and 0 < explained <= 1


def test_projections_of_unchanged_embeddings_are_reused(tmp_path):
    rng = np.random.default_rng(1)
    candidate, real = rng.normal(size=(30, 8)), rng.normal(size=(25, 8))
    info = {"models": {"embedding": "m"}, "config": {"cache_dir": str(tmp_path)},
            "content_hashes": {"candidates": {"a": "hash-a", "b": "hash-b"}, "real": {"2": "real-2", "1": "real-1"}}}
    run = load.RunData(str(tmp_path), info, None, None)
    computed = []

    def compute():
        computed.append(1)
        return view.pca_2d(candidate, real)

    first = load.projection(run, "a", compute, "pca400s0")
    again = load.projection(run, "a", compute, "pca400s0")
    assert len(computed) == 1
    for got, want in zip(again, first, strict=True):
        np.testing.assert_array_equal(got, want)
    expected = view.pca_2d(candidate, real)  # a cached answer is the answer
    np.testing.assert_allclose(again[0], expected[0])
    np.testing.assert_allclose(again[1], expected[1])
    load.projection(run, "b", compute, "pca400s0")  # another candidate: computed
    load.projection(run, "a", compute, "pca200s0")  # another method: computed
    info["content_hashes"]["real"]["1"] = "real-1-changed"  # the first seed's U_r changed: computed
    load.projection(run, "a", compute, "pca400s0")
    assert len(computed) == 4
    assert not list(tmp_path.rglob("*.tmp-*"))
