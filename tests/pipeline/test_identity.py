"""Candidates are named by their files as they are now: results are reused by content and
relabelled with the current id, candidates with the same texts (twins) are scored once and
ranked under each name, and a candidate too small for a proxy fails alone.

The stage-level tests drive `run_stage` with an in-process stage (no Ray: `ensure_ray` is
replaced); the pipeline tests at the end run the real engine on small generated data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import yaml

from synque_ray.config import RankingConfig, parse_config
from synque_ray.demo import write_demo_data
from synque_ray.errors import UserError
from synque_ray.findings import LIMITS, add_findings, finding_parts, per_candidate
from synque_ray.pipeline import identical_candidates, read_candidates, reduce_outcomes, scorable_candidates
from synque_ray.reading import RowSet
from synque_ray.vocabulary import RESULT_SCHEMA
from synque_ray.rowschema import ROW_SCHEMA
from synque_ray.stage import base
from synque_ray.stage.base import Committed, Stage, run_stage
from synque_ray.storage import Store

SEEDS = [1, 2]
PROXIES = ["long", "varied"]


class TextStage(Stage):
    """An in-process stage: per seed, two toy proxies of the texts (mean length, distinct share),
    and one row signal per text. It records what it was asked to compute."""

    name = "text"

    def __init__(self, broken: str | None = None):
        super().__init__()
        self.computed: list[list[str]] = []
        self.broken = broken

    def key_payload(self, candidate: RowSet) -> dict:
        return {"seeds": SEEDS}

    def expected_results(self, candidate: RowSet) -> int:
        return len(SEEDS) * len(PROXIES)

    def finish(self, outcome) -> None:
        super().finish(outcome)
        outcome.rows = [committed.rows for committed in outcome.committed.values()]  # as the embedding stage

    def run(self, todo, commit, fail) -> None:
        self.computed.append([c.name for c in todo])
        for candidate in todo:
            if candidate.name == self.broken:
                fail(candidate.name, f"text: cannot score {candidate.name}")
                continue
            texts = candidate.texts
            values = {"long": sum(map(len, texts)) / len(texts), "varied": len(set(texts)) / len(texts)}
            results = pl.DataFrame([{"dataset_id": candidate.name, "proxy": p, "seed": s, "raw": values[p],
                                     "score": values[p], "replicates": [], "error": None, "seconds": 0.0}
                                    for s in SEEDS for p in PROXIES], schema=RESULT_SCHEMA)
            rows = pl.DataFrame({"dataset_id": [candidate.name] * len(texts), "seed": [SEEDS[0]] * len(texts),
                                 "row_index": list(range(len(texts))),
                                 "text_chars": [len(t) for t in texts]}).with_columns(
                pl.lit(None).alias(c) for c in ROW_SCHEMA if c not in ("dataset_id", "seed", "row_index",
                                                                       "text_chars"))
            commit(candidate.name, Committed(results, rows.select(list(ROW_SCHEMA)).cast(ROW_SCHEMA)))


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    monkeypatch.setattr(base, "ensure_ray", lambda: None)


def texts(word: str, count: int = 6) -> list[str]:
    return [word * (i + 1) for i in range(count)]


def ids(frame: pl.DataFrame) -> list[str]:
    return sorted(set(frame.get_column("dataset_id").to_list()))


def test_a_reused_result_carries_the_name_the_file_has_now(tmp_path):
    store = Store(str(tmp_path))
    run_stage(TextStage(), [RowSet("c5", texts("a")), RowSet("b", texts("bb"))], store)
    stage = TextStage()
    again = run_stage(stage, [RowSet("b", texts("bb")), RowSet("renamed", texts("a"))], store)
    assert stage.computed == [] and again.counts["reused"] == 2  # nothing recomputed on a rename
    assert list(again.committed) == ["b", "renamed"]
    assert ids(again.committed["renamed"].results) == ["renamed"]
    assert ids(again.committed["renamed"].rows) == ["renamed"]
    assert ids(again.scores) == ["b", "renamed"]  # no trace of c5


def test_twins_are_computed_once_and_each_has_the_result_under_its_own_name(tmp_path):
    store = Store(str(tmp_path))
    candidates = [RowSet("c2", texts("a")), RowSet("other", texts("b")), RowSet("twin", texts("a"))]
    for run in range(2):
        stage = TextStage()
        outcome = run_stage(stage, candidates, store)
        assert stage.computed == ([["c2", "other"]] if run == 0 else [])
        assert outcome.counts["scored"] + outcome.counts["reused"] == 3
        assert list(outcome.committed) == ["c2", "other", "twin"]
        assert ids(outcome.committed["twin"].results) == ["twin"] and ids(outcome.committed["twin"].rows) == ["twin"]
        assert outcome.scores.select("dataset_id", "proxy", "seed").is_duplicated().sum() == 0
        mine = outcome.scores.filter(pl.col("dataset_id") == "twin").drop("dataset_id")
        assert mine.equals(outcome.scores.filter(pl.col("dataset_id") == "c2").drop("dataset_id"))


def test_the_twin_of_a_failed_candidate_fails_with_the_reason_and_the_name_of_its_twin(tmp_path):
    candidates = [RowSet("c2", texts("a")), RowSet("other", texts("b")), RowSet("twin", texts("a"))]
    outcome = run_stage(TextStage(broken="c2"), candidates, Store(str(tmp_path)))
    assert outcome.failed == {"c2": "text: cannot score c2",
                              "twin": "text: cannot score c2 (scored once with c2, which holds the same texts)"}
    assert list(outcome.committed) == ["other"] and outcome.counts["reused"] == 0


def reduce(outcomes, candidates, unscored=None):
    return reduce_outcomes(outcomes, candidates, SEEDS, RankingConfig(), unscored)


def test_twins_are_both_ranked_on_a_rerun_with_a_finding_that_names_the_other(tmp_path):
    """Before relabelling, the re-run loaded one result under one name for both twins, and the
    ensemble's weights failed on the duplicate rows (polars ComputeError in `_complete_ranks`)."""
    store = Store(str(tmp_path))
    candidates = [RowSet(name, texts(word)) for name, word in
                  [("c1", "x"), ("c2", "a"), ("c3", "bcd"), ("c4", "ef"), ("twin", "a")]]
    run_stage(TextStage(), candidates, store)
    tables, summary = reduce([run_stage(TextStage(), candidates, store)], candidates)
    rankings = tables["rankings.parquet"]
    ensemble = rankings.filter(pl.col("proxy") == "ensemble")
    assert ids(ensemble) == ["c1", "c2", "c3", "c4", "twin"]
    rank = dict(zip(ensemble["dataset_id"], ensemble["rank"], strict=True))
    assert rank["twin"] == rank["c2"]
    found = {row["dataset_id"]: row for row in per_candidate(rankings).iter_rows(named=True)}
    assert found["twin"]["identical_to"] == "c2" and found["c2"]["identical_to"] == "twin"
    assert found["c1"]["identical_to"] is None
    assert "identical_to" not in LIMITS and found["twin"]["flags"] == found["c2"]["flags"]  # never a flag
    assert finding_parts(found["twin"]) == finding_parts(found["c2"])  # informational: the terminal notes it
    assert summary["counts"]["candidates_reused"] == 5 and summary["counts"]["candidates_scored"] == 0
    assert ids(tables["row_scores.parquet"]) == ["c1", "c2", "c3", "c4", "twin"]


def test_identical_candidates_names_every_other_member_of_its_group():
    candidates = [RowSet("a", ["x", "y"]), RowSet("b", ["x", "y"]), RowSet("c", ["z"]), RowSet("d", ["x", "y"])]
    assert identical_candidates(candidates) == {"a": "b, d", "b": "a, d", "d": "a, b"}


def test_identical_to_is_null_without_twins():
    rankings = pl.DataFrame({"dataset_id": ["a", "b"], "proxy": ["mdm", "mdm"], "rank": [1, 2]})
    table = add_findings(rankings, None)
    assert table["identical_to"].to_list() == [None, None]
    assert not any("identical" in part for part in finding_parts(table.row(0, named=True)))


# ---------------------------------------------------------------- a candidate too small fails alone


def small_config(tmp_path: Path, **overrides) -> object:
    (tmp_path / "cands").mkdir(exist_ok=True)
    (tmp_path / "pool.json").write_text(json.dumps([{"text": f"real row {i}"} for i in range(20)]))
    raw = {"name": "t", "output": str(tmp_path / "out"),
           "real": {"path": str(tmp_path / "pool.json"), "text": "text", "sample_size": 10, "seeds": [1]},
           "candidates": {"path": str(tmp_path / "cands"), "text": "text"}, **overrides}
    return parse_config(raw)


def write_candidate(tmp_path: Path, name: str, rows: int) -> None:
    (tmp_path / "cands" / f"{name}.json").write_text(json.dumps([{"text": f"{name} {i}"} for i in range(rows)]))


def test_a_too_small_candidate_is_left_out_with_its_reason(tmp_path):
    config = small_config(tmp_path)
    write_candidate(tmp_path, "good", 12)
    write_candidate(tmp_path, "tiny", 1)
    too_small: dict[str, str] = {}
    assert [c.name for c in read_candidates(config, too_small=too_small)] == ["good"]
    assert too_small == {"tiny": f"{tmp_path}/cands/tiny.json: 1 rows, fewer than the 5 that PAD's 5 folds needs"}
    with pytest.raises(UserError, match="tiny.json: 1 rows, fewer than the 5 that PAD's 5 folds needs"):
        read_candidates(config)  # without a place to record it, as the benchmarks read candidates


def test_when_every_candidate_is_too_small_it_is_one_line(tmp_path):
    config = small_config(tmp_path)
    write_candidate(tmp_path, "a", 1)
    write_candidate(tmp_path, "b", 2)
    with pytest.raises(UserError) as raised:
        scorable_candidates(config, {}, {})
    assert str(raised.value) == (f"{tmp_path}/cands/a.json: 1 rows, fewer than the 5 that PAD's 5 folds needs "
                                 "(and 1 other candidate(s) are too small too: nothing to rank)")


def test_a_too_small_candidate_is_failed_and_counted_and_the_others_ranked(tmp_path):
    candidates = [RowSet(name, texts(word)) for name, word in [("c1", "x"), ("c2", "a"), ("c3", "bcd")]]
    unscored = {"tiny": "cands/tiny.json: 1 rows, fewer than the 5 that PAD's 5 folds needs"}
    tables, summary = reduce([run_stage(TextStage(), candidates, Store(str(tmp_path)))], candidates, unscored)
    assert summary["failed"] == unscored
    assert {k: summary["counts"][k] for k in ("candidates_total", "candidates_scored", "candidates_failed",
                                              "candidates_reused")} == {
        "candidates_total": 4, "candidates_scored": 3, "candidates_failed": 1, "candidates_reused": 0}
    assert ids(tables["rankings.parquet"]) == ["c1", "c2", "c3"]


# ---------------------------------------------------------------- through the real engine


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    write_demo_data(folder, n_candidates=3, rows=30, pool_rows=60)
    cands = sorted((folder / "candidates").iterdir())
    shutil.copyfile(cands[0], cands[0].with_name("twin.jsonl"))  # byte-identical
    variant = b"\xef\xbb\xbf" + cands[1].read_bytes().replace(b"\n", b"\r\n")  # same texts: BOM and CRLF
    cands[1].with_name("variant.jsonl").write_bytes(variant)
    (folder / "candidates" / "tiny.jsonl").write_text('{"text": "one row"}\n')
    return folder


@pytest.mark.ray
def test_twins_variants_renames_and_a_tiny_candidate_through_the_engine(ray_session, data_dir, tmp_path, capsys):
    import synque_ray
    from synque_ray import cli

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    raw = {"name": "identity", "output": str(tmp_path / "out"),
           "real": {"path": str(data / "real" / "pool.jsonl"), "text": "text", "sample_size": 20, "seeds": [1, 2]},
           "candidates": {"path": str(data / "candidates"), "text": "text"},
           "embedding": {"model": "bundled-minilm", "batch_size": 32}, "resources": {"embed_actors": 1}}
    c0, c1, c2 = sorted(p.stem for p in (data / "candidates").glob("gen*"))
    tiny = f"{data}/candidates/tiny.jsonl: 1 rows, fewer than the 5 that PAD's 5 folds needs"

    first = synque_ray.score(raw)
    assert first.failed == {"tiny": tiny} and first.summary is not None
    counts = first.summary.counts
    assert counts["candidates_scored"] == 3 and counts["candidates_reused"] == 2
    assert counts["rows_embedded"] == 3 * 30 + 2 * 20  # each text embedded once, twins included
    named = {c0, c1, c2, "twin", "variant"}
    assert set(first.rankings.filter(pl.col("proxy") == "ensemble")["dataset_id"]) == named
    assert f"{c0}, twin hold the same texts: scored once, ranked under each name" in first.summary.notes

    (data / "candidates" / f"{c2}.jsonl").rename(data / "candidates" / "renamed.jsonl")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as code:  # the tiny candidate failed: exit 1, the others published
        cli.main(["score", str(tmp_path / "job.yaml")])
    assert code.value.code == 1
    said = capsys.readouterr()
    printed = said.out
    assert f"failed: tiny: {tiny}" in printed
    assert f"note: {c0}, twin hold the same texts: scored once, ranked under each name" in said.err  # notes: stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    counts = run["counts"]
    assert counts["candidates_scored"] == 0 and counts["rows_embedded"] == 0
    assert counts["candidates_reused"] == 5 and counts["candidates_failed"] == 1
    renamed = (named - {c2}) | {"renamed"}
    assert run["failed"] == {"tiny": tiny} and set(run["content_hashes"]["candidates"]) == renamed
    for table in ("scores", "rankings", "row_scores"):
        assert set(pl.read_parquet(tmp_path / "out" / f"{table}.parquet")["dataset_id"]) == renamed, table
    report = (tmp_path / "out" / "report.html").read_text()
    assert "renamed" in report and c2 not in report and c2 not in printed  # the History names it as it is now
    second = SimpleNamespace(scores=pl.read_parquet(tmp_path / "out" / "scores.parquet"),
                             rankings=pl.read_parquet(tmp_path / "out" / "rankings.parquet"))
    before = first.scores.filter(pl.col("dataset_id") == c2).drop("dataset_id")
    assert second.scores.filter(pl.col("dataset_id") == "renamed").drop("dataset_id").equals(before)
    found = {r["dataset_id"]: r for r in per_candidate(second.rankings).iter_rows(named=True)}
    assert (found["twin"]["identical_to"], found[c0]["identical_to"]) == (c0, "twin")
    assert (found["variant"]["identical_to"], found[c1]["identical_to"]) == (c1, "variant")
    assert found["twin"]["flags"] == found[c0]["flags"]  # informational: the twin finding flags nothing

    assert cli.main(["select", str(tmp_path / "out"), "--by", "ensemble", "--top", "5",
                     "--out", str(tmp_path / "picked")]) == 0
    assert {p.stem for p in (tmp_path / "picked").glob("*.jsonl")} == renamed



# ---------------------------------------------------------------- LENS rubrics: reused by content too


def rubric_source(monkeypatch):
    """A RubricSource whose writer is a test double: each written rubric is new (a counter), and
    what was asked is recorded."""
    from synque_ray.config import LensConfig, ResourcesConfig
    from synque_ray.lens.rubric import Rubric
    from synque_ray.lens.rubric_source import RubricSource

    lens = LensConfig(rubric_writer={"openai_base_url": "http://127.0.0.1:9", "model": "writer"})
    source = RubricSource(lens, ResourcesConfig())
    asked: list[tuple[str, int]] = []

    def write(needed, real):
        asked.extend((candidate.name, seed) for candidate, seed, _ in needed)
        return [Rubric([f"shared {len(asked)} {i}"], [f"real {i}"], [f"synthetic {i}"]) for i in range(len(needed))]

    monkeypatch.setattr(source, "_write", write)
    return source, asked


def test_a_rubric_is_reused_by_content_under_a_new_name_and_written_once_for_twins(tmp_path, monkeypatch):
    source, asked = rubric_source(monkeypatch)
    store = Store(str(tmp_path))
    real = {1: RowSet("real/seed1", texts("r")), 2: RowSet("real/seed2", texts("s"))}
    first = source.prepare([RowSet("c5", texts("a")), RowSet("b", texts("bb"))], real, store, fresh=False)
    assert sorted(asked) == [("b", 1), ("b", 2), ("c5", 1), ("c5", 2)] and first.written == 4
    asked.clear()
    again = source.prepare([RowSet("b", texts("bb")), RowSet("renamed", texts("a")), RowSet("twin", texts("a"))],
                           real, store, fresh=False)
    assert asked == [] and again.written == 0 and again.reused == 6  # nothing written for a rename or a twin
    for seed in real:
        assert again.by_pair[("renamed", seed)].digest == first.by_pair[("c5", seed)].digest
        assert again.by_pair[("twin", seed)].digest == first.by_pair[("c5", seed)].digest
        assert (tmp_path / "rubrics" / "renamed" / f"seed{seed}.json").is_file()  # the report reads it there
    fresh = source.prepare([RowSet("x", texts("q")), RowSet("y", texts("q"))], real, Store(str(tmp_path / "new")),
                           fresh=False)
    assert sorted(asked) == [("x", 1), ("x", 2)] and fresh.written == 2  # twins: one rubric, written once
    assert all(fresh.by_pair[("x", s)].digest == fresh.by_pair[("y", s)].digest for s in real)


def test_the_history_names_earlier_runs_candidates_as_their_files_are_named_now():
    from synque_ray.report.load import named_now

    earlier = pl.DataFrame({"dataset_id": ["c1", "c2", "gone", "a"], "rank": [1, 2, 3, 4]})
    then = {"c1": "h1", "c2": "h2", "gone": "h9", "a": "h5"}
    now = {"c1": "h1", "renamed": "h2", "b": "h5", "a_twin": "h5"}  # c2 renamed; a's content now in two files
    assert named_now(earlier, then, now)["dataset_id"].to_list() == ["c1", "renamed", "gone", "a_twin"]
    assert named_now(earlier, then, {**now, "a": "h5"})["dataset_id"].to_list()[3] == "a"  # a is still there
    assert named_now(earlier, {}, now).equals(earlier)  # an older run without hashes keeps its names
