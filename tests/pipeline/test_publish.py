"""Publishing a run's set: the top level shows one run at every kill point; a run's report
counts that run in its history; an evaluation is carried to every later run."""

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from synque_ray.pipeline import publish, write_set
from synque_ray.runfiles import is_set_file, latest_stamp, published
from synque_ray.storage import Store

OLD, NEW = "20261201T000000000000Z", "20261202T000000000000Z"


def _tables(tag: str, lens: bool) -> dict[str, pl.DataFrame]:
    names = ["scores.parquet", "rankings.parquet", "row_scores.parquet"] + (["lens_scores.parquet"] if lens else [])
    return {name: pl.DataFrame({"dataset_id": [f"{tag}-{name}"]}) for name in names}


def _write(store: Store, stamp: str, tag: str, lens: bool, extra: str) -> None:
    """One run's set; the two runs' sets differ in their files as well as in content."""
    write_set(store, _tables(tag, lens), {"started_at": stamp, "name": tag})
    store.write_text(f"runs/{stamp}/{extra}", f"{extra} of {tag}")


def _shown(out: Path) -> dict[str, bytes]:
    """What a reader of the top level sees: each set file there that opens, and its bytes."""
    return {name: (out / name).read_bytes() for name in sorted(os.listdir(out))
            if is_set_file(name) and (out / name).is_file()}


def _owner(out: Path, shown: dict[str, bytes]) -> str | None:
    """The one run whose set the top level shows in full; fails on a mix."""
    if not shown:
        return None
    for stamp in (OLD, NEW):
        folder = out / "runs" / stamp
        own = {name: (folder / name).read_bytes() for name in os.listdir(folder) if is_set_file(name)}
        if own == shown:
            return stamp
    raise AssertionError(f"the top level mixes runs or is partial: {sorted(shown)}")


class Killed(BaseException):
    """The process dies here (nothing after it runs)."""


def _kill_at(monkeypatch, step: int) -> list[str]:
    """Make the `step`-th file-system change of publishing (0-based) die before it happens."""
    done: list[str] = []

    def wrap(what, real):
        def changed(*args, **kwargs):
            if len(done) == step:
                raise Killed
            done.append(f"{what} {args[1] if what == 'write' else args[0]}")
            return real(*args, **kwargs)
        return changed

    for name in ("symlink", "replace", "unlink", "rename"):
        monkeypatch.setattr(os, name, wrap(name, getattr(os, name)))
    monkeypatch.setattr(Store, "write_bytes", wrap("write", Store.write_bytes))
    monkeypatch.setattr(Store, "delete", wrap("delete", Store.delete))
    return done


@pytest.mark.parametrize("before", ["published", "copies", "copied"])
def test_the_top_level_shows_one_run_at_every_kill_point_of_publishing(monkeypatch, tmp_path, before):
    """The old run has an evaluation and a LENS table, the new one a report instead: a kill after
    any step leaves the top level all old or all new (the files the set has, with its bytes), and
    the pointer every command follows names that same run. `copies`: an output published by an
    earlier version (top-level copies and LATEST only) is taken over the same way; `copied`: so is
    a published folder copied with its links followed (`current` a folder, the files copies)."""
    steps = None
    for step in range(100):
        out = tmp_path / f"kill{step}"
        store = Store(str(out))
        if before == "copied":  # published, then the folder copied with its links followed
            _write(Store(str(tmp_path / "original")), OLD, "old", lens=True, extra="evaluation.json")
            publish(Store(str(tmp_path / "original")), OLD)
            shutil.copytree(tmp_path / "original", out)
            shutil.rmtree(tmp_path / "original")
            assert (out / "current").is_dir() and not (out / "current").is_symlink()
        else:
            _write(store, OLD, "old", lens=True, extra="evaluation.json")
        if before == "published":
            publish(store, OLD)
        elif before == "copies":
            for name in os.listdir(out / "runs" / OLD):
                (out / name).write_bytes((out / "runs" / OLD / name).read_bytes())
            (out / "LATEST").write_text(OLD + "\n")
        assert _owner(out, _shown(out)) == OLD
        _write(store, NEW, "new", lens=False, extra="report.html")
        done = _kill_at(monkeypatch, step)
        try:
            publish(store, NEW)
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()
        owner = _owner(out, _shown(out))
        assert owner == latest_stamp(store), f"killed after {done}: the pointer names {latest_stamp(store)}"
        assert published(str(out)).display() == f"{out}/runs/{owner}"
        if not finished:  # the next run publishes over whatever the kill left, and leaves nothing behind
            publish(store, NEW)
            assert _owner(out, _shown(out)) == NEW and latest_stamp(store) == NEW
            assert not [name for name in os.listdir(out) if ".tmp-" in name or ".stale-" in name]
        if finished:
            assert owner == NEW and (out / "LATEST").read_text() == NEW + "\n"
            assert sorted(_shown(out)) == ["rankings.parquet", "report.html", "row_scores.parquet", "run.json",
                                           "scores.parquet"]
            steps = step
            break
    assert steps is not None and steps >= 3  # publishing took several steps, each one killed once


def test_an_evaluation_added_to_the_published_set_shows_at_the_top_level(tmp_path):
    from synque_ray.runfiles import copy_if_latest

    store = Store(str(tmp_path / "out"))
    _write(store, OLD, "old", lens=False, extra="report.html")
    publish(store, OLD)
    store.write_json(f"runs/{OLD}/evaluation.json", {"run": OLD})
    assert copy_if_latest(store, store.child(f"runs/{OLD}"), "evaluation.json")
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text()) == {"run": OLD}
    _write(store, NEW, "new", lens=False, extra="report.html")
    assert not copy_if_latest(store, store.child(f"runs/{NEW}"), "report.html")  # not published yet
    publish(store, NEW)
    assert not (tmp_path / "out" / "evaluation.json").exists()  # the new set has none


# ---------------------------------------------------------------- an evaluation carried to later runs


def _scored(values: dict[str, list[float]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """scores (one proxy, a seed per value) and rankings (by mean score) for candidates → scores."""
    scores = pl.DataFrame([{"dataset_id": i, "proxy": "mdm", "seed": seed, "raw": v, "score": v}
                           for i, vs in values.items() for seed, v in enumerate(vs)])
    means = sorted(((sum(vs) / len(vs), i) for i, vs in values.items()), reverse=True)
    rankings = pl.DataFrame([{"dataset_id": i, "proxy": "mdm", "score_mean": m, "rank": r}
                             for r, (m, i) in enumerate(means, start=1)])
    return scores, rankings


def _spearman_by_hand(scores: pl.DataFrame, performance: dict[str, float]) -> float:
    from scipy import stats

    per_seed = [stats.spearmanr(g["score"].to_list(), [performance[i] for i in g["dataset_id"]]).statistic
                for _, g in scores.group_by("seed")]
    return sum(per_seed) / len(per_seed)


def test_a_new_run_is_evaluated_as_the_last_evaluation_was_while_its_file_exists(tmp_path, monkeypatch):
    from synque_ray.evaluate import carry_evaluation, evaluate_run

    out, store = tmp_path / "out", Store(str(tmp_path / "out"))
    first = _scored({"a": [0.1, 0.2], "b": [0.5, 0.4], "c": [0.9, 0.8], "d": [0.3, 0.35]})
    write_set(store, {"scores.parquet": first[0], "rankings.parquet": first[1]}, {"started_at": OLD})
    publish(store, OLD)
    csv = tmp_path / "perf.csv"
    csv.write_text("name,acc\na,0.1\nb,0.2\nc,0.3\nd,0.4\n")
    monkeypatch.chdir(tmp_path)  # a relative path, as a user gives it; the next run may start elsewhere
    evaluate_run(str(out), "perf.csv", "name", "acc", top_k=2)
    monkeypatch.chdir(out)

    second = _scored({"a": [0.9, 0.7], "b": [0.1, 0.3], "c": [0.5, 0.6], "d": [0.2, 0.1]})
    write_set(store, {"scores.parquet": second[0], "rankings.parquet": second[1]}, {"started_at": NEW})
    said = carry_evaluation(store, f"runs/{NEW}", *second, NEW)
    assert said == f"evaluated against {csv} (id column 'name', metric 'acc'), as the last `synque evaluate` did: " \
                   "evaluation.json"
    report = json.loads((out / "runs" / NEW / "evaluation.json").read_text())
    performance = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    assert report["run"] == NEW and report["metric"] == "acc" and report["top_k"] == 2
    assert report["proxies"]["mdm"]["spearman"] == pytest.approx(_spearman_by_hand(second[0], performance), abs=1e-6)
    assert report["proxies"]["mdm"]["top_k_performance"] == pytest.approx((0.1 + 0.3) / 2)  # a and c rank 1, 2
    publish(store, NEW)
    assert json.loads((out / "evaluation.json").read_text())["run"] == NEW  # the top level shows it

    third = "20261203T000000000000Z"
    csv.write_text("name,acc\na,0.4\nb,0.3\nc,0.2\nd,0.1\n")  # changed: re-read, and said
    write_set(store, {"scores.parquet": second[0], "rankings.parquet": second[1]}, {"started_at": third})
    said = carry_evaluation(store, f"runs/{third}", *second, third)
    assert said is not None and said.endswith("(the file changed since then: re-read): evaluation.json")
    report = json.loads((out / "runs" / third / "evaluation.json").read_text())
    assert report["proxies"]["mdm"]["spearman"] == pytest.approx(
        _spearman_by_hand(second[0], {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}), abs=1e-6)
    publish(store, third)

    csv.unlink()  # gone: said, and nothing is made up
    fourth = "20261204T000000000000Z"
    write_set(store, {"scores.parquet": second[0], "rankings.parquet": second[1]}, {"started_at": fourth})
    assert carry_evaluation(store, f"runs/{fourth}", *second, fourth) == (
        f"not evaluated: {csv} (id column 'name', metric 'acc'), which the last evaluation used, is gone; "
        "run `synque evaluate` again")
    assert not (out / "runs" / fourth / "evaluation.json").exists()


def test_a_performance_file_that_no_longer_fits_is_said_and_not_fatal(tmp_path):
    from synque_ray.evaluate import carry_evaluation, evaluate_run

    out, store = tmp_path / "out", Store(str(tmp_path / "out"))
    scored = _scored({"a": [0.1], "b": [0.5], "c": [0.9]})
    write_set(store, {"scores.parquet": scored[0], "rankings.parquet": scored[1]}, {"started_at": OLD})
    publish(store, OLD)
    csv = tmp_path / "perf.csv"
    csv.write_text("name,acc\na,0.1\nb,0.2\nc,0.3\n")
    evaluate_run(str(out), str(csv), "name", "acc", top_k=1)
    csv.write_text("id,acc\na,0.1\n")  # the id column renamed
    write_set(store, {"scores.parquet": scored[0], "rankings.parquet": scored[1]}, {"started_at": NEW})
    said = carry_evaluation(store, f"runs/{NEW}", *scored, NEW)
    assert said == (f"not evaluated: {csv} (id column 'name', metric 'acc') no longer fits this run ({csv}: no "
                    "column 'name' (columns: id, acc))")
    assert not (out / "runs" / NEW / "evaluation.json").exists()


def test_a_report_written_before_its_run_is_published_counts_that_run_in_its_history(tmp_path):
    from synque_ray.report.load import load_run

    out, store = tmp_path / "out", Store(str(tmp_path / "out"))
    for stamp in (OLD, NEW):
        scores, rankings = _scored({"a": [0.1], "b": [0.5]})
        write_set(store, {"scores.parquet": scores, "rankings.parquet": rankings}, {"started_at": stamp})
        if stamp == OLD:
            publish(store, OLD)
    (out / "runs" / "20261203T000000000000Z").mkdir()  # a later run still writing: in neither history
    assert [stamp for stamp, _ in load_run(str(out), NEW).history] == [OLD, NEW]  # NEW's own report
    assert [stamp for stamp, _ in load_run(str(out)).history] == [OLD]  # the published set's
