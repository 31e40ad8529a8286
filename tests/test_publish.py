"""Publishing a run's set: the top level shows one run at every kill point; a run's report
counts that run in its history; an evaluation is carried to every later run."""

import json
import os
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


@pytest.mark.parametrize("before", ["published", "copies"])
def test_the_top_level_shows_one_run_at_every_kill_point_of_publishing(monkeypatch, tmp_path, before):
    """The old run has an evaluation and a LENS table, the new one a report instead: a kill after
    any step leaves the top level all old or all new (the files the set has, with its bytes), and
    the pointer every command follows names that same run. `copies`: an output published by an
    earlier version (top-level copies and LATEST only) is taken over the same way."""
    steps = None
    for step in range(100):
        out = tmp_path / f"kill{step}"
        store = Store(str(out))
        _write(store, OLD, "old", lens=True, extra="evaluation.json")
        if before == "published":
            publish(store, OLD)
        else:
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
