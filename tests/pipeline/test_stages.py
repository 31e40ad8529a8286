"""The stage abstraction: keys, reuse, per-candidate commit and the one failure rule; the
cascade's ranking rules; LENS scores with bootstrap replicates (no model needed)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from synque_ray.lens.results import lens_results, p_hat_table, score_table
from synque_ray.lens.judge import OUTPUT_SCHEMA
from synque_ray.reading import RowSet
from synque_ray.lens.stage import LensStage
from synque_ray.reduce import ENSEMBLES, add_ensemble, incomplete, rank, top_by
from synque_ray.stage.base import Committed, Stage, StageOutcome, run_stage
from synque_ray.stage.tasks import TaskStage
from synque_ray.storage import Store
from synque_ray.vocabulary import RESULT_SCHEMA

ROWS = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "length": pl.Int64}


def mean_length(dataset_id: str, texts: list[str], real: dict[int, list[str]], broken: str | None):
    """A toy proxy as a stage's pure function: minus the gap in mean length to U_r, per seed."""
    if dataset_id == broken:
        raise ValueError(f"cannot score {dataset_id}")
    mine = float(np.mean([len(t) for t in texts]))
    results = [{"dataset_id": dataset_id, "proxy": "length", "seed": seed, "raw": mine,
                "score": -abs(mine - float(np.mean([len(t) for t in rows]))), "replicates": [], "error": None,
                "seconds": 0.0} for seed, rows in real.items()]
    rows = {"dataset_id": [dataset_id] * len(texts), "seed": [0] * len(texts), "row_index": list(range(len(texts))),
            "length": [len(t) for t in texts]}
    return results, rows


class LengthStage(TaskStage):
    """A third kind of stage in a few lines: one Ray task per candidate."""

    name = "length"
    row_schema = ROWS

    def __init__(self, real: dict[int, RowSet], broken: str | None = None):
        super().__init__()
        self.real, self.broken = real, broken

    def key_payload(self, candidate: RowSet) -> dict:
        return {"real": {str(s): r.content_hash for s, r in self.real.items()}}

    def expected_results(self, candidate: RowSet) -> int:
        return len(self.real)

    def task(self, candidate: RowSet):
        return mean_length, (candidate.name, candidate.texts, {s: r.texts for s, r in self.real.items()}, self.broken)


@pytest.fixture
def remote_module(ray_session):
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    yield
    ray_session.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def rowsets():
    real = {1: RowSet("real/seed1", ["a real row", "another real row"]), 2: RowSet("real/seed2", ["real"])}
    candidates = [RowSet(name, [name * k for k in range(1, 4)]) for name in ("aa", "bbb", "c")]
    return real, candidates


@pytest.mark.ray
def test_a_failing_candidate_is_recorded_and_the_others_commit_then_are_reused(remote_module, tmp_path):
    real, candidates = rowsets()
    store = Store(str(tmp_path))
    first = run_stage(LengthStage(real, broken="bbb"), candidates, store)
    assert sorted(first.computed) == ["aa", "c"] and list(first.committed) == ["aa", "c"]  # computed: as they finish
    assert first.failed["bbb"].startswith("length: ") and "cannot score bbb" in first.failed["bbb"]
    assert first.counts == {"scored": 2, "reused": 0, "failed": 1, "skipped": 0}
    assert first.scores.height == 4 and first.scores.columns == list(RESULT_SCHEMA)
    for name in ("aa", "c"):
        assert (tmp_path / "results" / f"{first.keys[name]}.parquet").is_file()
        assert pl.read_parquet(tmp_path / "results" / f"{first.keys[name]}.rows.parquet").columns == list(ROWS)
    again = run_stage(LengthStage(real), candidates, store)
    assert again.computed == ["bbb"] and again.counts["reused"] == 2 and not again.failed
    assert list(again.committed) == ["aa", "bbb", "c"]  # in candidate order, whatever finished first
    moved = {1: real[1], 2: RowSet("real/seed2", ["other real"])}
    assert run_stage(LengthStage(moved), candidates, store).counts["scored"] == 3  # U_r is part of the key


class HalfStage(Stage):
    """Commits its first candidate, then dies."""

    name = "half"

    def key_payload(self, candidate):
        return {}

    def expected_results(self, candidate):
        return 1

    def run(self, todo, commit, fail):
        row = {"dataset_id": todo[0].name, "proxy": "half", "seed": 1, "raw": 1.0, "score": 1.0,
               "replicates": [], "error": None, "seconds": 0.0}
        commit(todo[0].name, Committed(pl.DataFrame([row], schema=RESULT_SCHEMA), pl.DataFrame(schema=self.row_schema)))
        raise RuntimeError("engine died\nActorDiedError: the actor died unexpectedly")


@pytest.mark.ray
def test_an_exception_out_of_a_stage_fails_only_what_it_had_not_committed(ray_session, tmp_path):
    _, candidates = rowsets()
    outcome = run_stage(HalfStage(), candidates, Store(str(tmp_path)))
    assert list(outcome.committed) == ["aa"]
    assert outcome.failed == {"bbb": "half: ActorDiedError: the actor died unexpectedly",
                              "c": "half: ActorDiedError: the actor died unexpectedly"}


# ---------------------------------------------------------------- the cascade's ranking rules


def scores(rows):
    return pl.DataFrame([dict(zip(["dataset_id", "proxy", "seed", "raw", "score"], r, strict=True)) for r in rows],
                        schema={k: RESULT_SCHEMA[k] for k in ("dataset_id", "proxy", "seed", "raw", "score")})


CHEAP = [("a", "mmd", 1, 0, 3.0), ("b", "mmd", 1, 0, 2.0), ("c", "mmd", 1, 0, 1.0),
         ("a", "pad", 1, 0, 2.0), ("b", "pad", 1, 0, 3.0), ("c", "pad", 1, 0, 1.0)]


def test_top_by_ranks_by_the_ensemble_or_one_proxy():
    assert top_by(scores(CHEAP), "ensemble", 2, "mean") == ["a", "b"]  # a, b tie at mean rank 1.5: by id
    assert top_by(scores(CHEAP), "pad", 1) == ["b"]
    assert top_by(scores(CHEAP[:3]), "ensemble", 2) == ["a", "b"]  # one proxy: the ensemble is that proxy


def test_the_lens_cascade_picks_by_the_configured_ensemble():
    """A reversed proxy: the robust ensemble (weight 0 for it) and the plain mean pick different tops,
    and the cascade follows `ranking.ensemble` rather than always the default."""
    rows = [(c, p, 1, 0, float(10 - i)) for p, order in
            {"mmd": "abcde", "pad": "bacde", "mdm": "bacde", "mauve": "edcab"}.items() for i, c in enumerate(order)]
    earlier = [StageOutcome("embedding", {}, scores=scores(rows))]
    candidates = [RowSet(name, texts=["x"]) for name in "abcde"]
    lens = SimpleNamespace(models={}, config=SimpleNamespace(candidates=SimpleNamespace(by="ensemble", top=1)))
    picked = {method: LensStage(lens, {}, 0, ensemble=method).select(candidates, earlier)[0] for method in ENSEMBLES}
    assert [c.name for c in picked["robust"]] == ["b"] and [c.name for c in picked["mean"]] == ["a"]


def test_skipped_candidates_are_ranked_by_the_cheap_proxies_and_not_incomplete():
    judged = scores([*CHEAP, ("a", "lens", 1, 0.4, 0.4), ("b", "lens", 1, 0.6, 0.6)])
    exempt = {"c": {"lens"}}
    ensemble = add_ensemble(judged, exempt).filter(pl.col("proxy") == "ensemble").sort("dataset_id")
    assert ensemble["dataset_id"].to_list() == ["a", "b", "c"]
    # a: ranks 1 (mmd), 2 (pad), 2 (lens among the judged); b: 2, 1, 1; c: 3, 3 without lens
    assert ensemble["raw"].to_list() == pytest.approx([5 / 3, 4 / 3, 3.0])
    assert incomplete(judged, [1], exempt) == {}
    assert incomplete(judged, [1]) == {"c": ["lens@1"]}  # without the exemption it lacks LENS
    assert add_ensemble(judged).filter(pl.col("proxy") == "ensemble")["dataset_id"].sort().to_list() == ["a", "b"]
    ranked = rank(add_ensemble(judged, exempt)).filter(pl.col("proxy") == "ensemble")
    assert ranked.sort("rank")["dataset_id"].to_list() == ["b", "a", "c"]


def test_a_stage_adds_row_columns_where_it_has_rows():
    from synque_ray.rowschema import ROW_SCHEMA, row_scores_table

    base = pl.DataFrame({"dataset_id": ["a", "a", "b"], "seed": [1, 1, 1], "row_index": [0, 1, 0],
                         "text_hash": ["h0", "h1", "h2"]}).with_columns(
        [pl.lit(None, dtype).alias(c) for c, dtype in ROW_SCHEMA.items() if c not in ("dataset_id", "seed",
                                                                                    "row_index", "text_hash")])
    p_hat = pl.DataFrame({"dataset_id": ["a"], "seed": [1], "row_index": [1], "lens_p_real": [0.7]})
    table = row_scores_table([base.select(list(ROW_SCHEMA))], [p_hat])
    assert table.height == 3 and table["lens_p_real"].to_list() == [None, 0.7, None]


# ---------------------------------------------------------------- LENS scores


def judgements(rng: np.random.Generator, rows: int = 40) -> pl.DataFrame:
    records = []
    for dataset_id in ("x", "y"):
        for role in ("real", "synthetic"):
            for row in range(rows):
                g = rng.integers(0, 5, size=4).astype(float)
                unparsed = row == 3 and role == "synthetic"
                if unparsed:
                    g[1] = np.nan
                records.append({"dataset_id": dataset_id, "seed": 7, "row_id": row, "role": role,
                                **dict(zip(["g_real_csr", "g_synth_csr", "g_real_crs", "g_synth_crs"], g, strict=True)),
                                **dict(zip(["e_real_csr", "e_synth_csr", "e_real_crs", "e_synth_crs"], g, strict=True)),
                                "unparsed": unparsed, "retried": 0, "prompt_tokens": 10, "cached_tokens": 0})
    return pl.from_arrow(pl.DataFrame(records).to_arrow().select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))


def test_lens_scores_carry_seeded_bootstrap_replicates():
    table = judgements(np.random.default_rng(0))
    variants = score_table(table)
    p_hat = p_hat_table(table, "label")
    assert p_hat.height == 2 * 39 and 3 not in p_hat["row_index"].to_list()  # the unparsed row has no p̂
    results = lens_results(variants, p_hat, "label", resamples=50)
    assert results["proxy"].to_list() == ["lens", "lens"]
    for record, (_, mine) in zip(results.iter_rows(named=True), p_hat.group_by("dataset_id", maintain_order=True),
                                 strict=True):
        assert record["score"] == pytest.approx(mine["p_hat"].mean())
        replicates = np.array(record["replicates"])
        assert len(replicates) == 50 and len(set(replicates.round(12))) > 1
        assert abs(replicates.mean() - record["score"]) < 4 * replicates.std() / np.sqrt(50) + 1e-9
    again = lens_results(variants, p_hat, "label", resamples=50)
    assert again["replicates"].to_list() == results["replicates"].to_list()


@pytest.mark.parametrize("proxies, cascade, message", [
    (["mdm", "lens"], {"top": 2, "by": "pad"}, "lens.candidates.by: 'pad' is not ensemble or a proxy in proxies"),
    (["lens"], {"top": 2}, "lens.candidates.by: ensemble needs a proxy besides lens in proxies"),
    (["mdm", "lens"], {"top": 2, "by": "lens"},
     r"lens.candidates.by: 'lens' is not ensemble or a proxy in proxies other than lens \(mdm\)"),
    (["mdm", "lens"], {"top": 0}, "lens.candidates.top: Input should be greater than 0"),
    (["mdm", "lens"], {"top": 2, "over": 1}, "unknown key 'lens.candidates.over'"),
])
def test_cascade_settings_are_checked_in_one_line(proxies, cascade, message):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError

    config = {"name": "t", "output": "o", "real": {"path": "r", "text": "t"}, "candidates": {"path": "c", "text": "t"},
              "proxies": proxies, "lens": {"candidates": cascade}}
    with pytest.raises(UserError, match=message) as err:
        parse_config(config, "job.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("job.yaml: ")
