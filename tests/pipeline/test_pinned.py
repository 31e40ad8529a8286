"""Inputs pinned for a run (docs/storage.md), skipped files said."""

import json
import os
from pathlib import Path

import pytest

from synque_ray.reading import InputChanged, RowSet, content_hash, scan_candidates


def write_rows(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_texts_are_the_hashed_rows_or_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    write_rows(path, ["one", "two", "three"])
    rowset = RowSet("a", path=path, spec="text")
    assert rowset.texts == ["one", "two", "three"] and rowset.content_hash == content_hash(rowset.texts)
    write_rows(path, ["one", "two", "THREE"])  # same size, other rows
    with pytest.raises(InputChanged) as err:
        _ = rowset.texts  # reading the property re-checks the file
    assert str(err.value) == f"{path} changed during the run; re-run to score it" and err.value.name == "a"
    path.unlink()
    with pytest.raises(InputChanged, match=r"changed during the run \(file not found\); re-run to score it"):
        _ = rowset.texts  # reading the property re-checks the file


def test_symlinks_are_followed_and_every_skipped_entry_is_named(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_rows(outside / "linked.jsonl", ["x"])
    folder = tmp_path / "candidates"
    folder.mkdir()
    write_rows(folder / "plain.jsonl", ["y"])
    (folder / "linked.jsonl").symlink_to(outside / "linked.jsonl")
    (folder / "gone.jsonl").symlink_to(tmp_path / "missing.jsonl")
    (folder / "notes.txt").write_text("not a candidate")
    (folder / "sub").mkdir()
    found, skipped = scan_candidates(str(folder))
    assert found == [("linked", folder / "linked.jsonl"), ("plain", folder / "plain.jsonl")]
    assert skipped == {
        str(folder / "gone.jsonl"): f"dangling symlink (points to {tmp_path / 'missing.jsonl'})",
        str(folder / "notes.txt"): "unsupported file type '.txt' (use .json, .jsonl, .parquet, .csv)",
        str(folder / "sub"): "a folder, not a file",
    }
    found, skipped = scan_candidates(str(folder / "*.jsonl"))  # a glob: the same rule for links
    assert [name for name, _ in found] == ["linked", "plain"] and list(skipped) == [str(folder / "gone.jsonl")]


# ---------------------------------------------------------------- §3: a proxy that can only fail


BASE = {"name": "t", "output": "/tmp/never-written", "real": {"path": "a.jsonl", "text": "text"},
        "candidates": {"path": "c", "text": "text"}}


@pytest.mark.parametrize("section, message", [
    ({"pad": {"folds": 1}}, "config: pad.folds: must be 0 (one holdout) or at least 2 (cross-fitting), got 1"),
    ({"mmd": {"gamma": 0}}, "config: mmd.gamma: Input should be greater than 0"),
    ({"mmd": {"coef0": float("nan")}}, "config: mmd.coef0: Input should be a finite number"),
    ({"mauve": {"scaling_factor": float("inf")}}, "config: mauve.scaling_factor: Input should be a finite number"),
    ({"perplexity": {"learning_rate": float("inf")}},
     "config: perplexity.learning_rate: Input should be a finite number"),
])
def test_parameters_that_can_only_fail_are_refused_when_the_config_is_read(section, message):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError

    with pytest.raises(UserError) as err:
        parse_config({**BASE, **section})
    assert str(err.value) == message


def test_unbiased_mmd_needs_two_rows_a_side_in_each_half():
    from synque_ray.proxies.mmd import MmdParams

    needs = (4, "mmd's unbiased estimator on half-sample replicates")
    assert MmdParams().min_rows() == needs == MmdParams().min_real_rows()
    assert MmdParams(estimator="biased").min_rows() == (2, "half-sample replicates")


def _scores(proxies):
    import polars as pl

    return pl.DataFrame({"dataset_id": ["a"] * len(proxies), "proxy": proxies})


def test_a_proxy_without_one_usable_result_ends_the_run_unless_partial_runs_are_allowed():
    from synque_ray.config import parse_config
    from synque_ray.errors import RunFailed
    from synque_ray.pipeline import check_proxies

    failures = [{"dataset_id": "a", "proxy": "pad", "seed": 1, "error": "pad: too few rows in a fold"},
                {"dataset_id": "b", "proxy": "pad", "seed": 1, "error": "pad: later"},
                {"dataset_id": "b", "proxy": "mmd", "seed": 2, "error": "mmd is not finite (nan)"}]
    config = parse_config({**BASE, "proxies": ["mdm", "mmd", "pad"]})
    with pytest.raises(RunFailed) as err:
        check_proxies(config, _scores(["mdm", "mmd", "ensemble"]), failures, {})
    assert str(err.value) == ("proxy 'pad' failed for every candidate (first error: a seed 1: pad: too few rows in "
                              "a fold); nothing was published (set allow_partial: true to publish the other "
                              "proxies without it)")
    partial = parse_config({**BASE, "proxies": ["mdm", "mmd", "pad"], "allow_partial": True})
    assert check_proxies(partial, _scores(["mdm", "mmd"]), failures, {}) == {
        "pad": "a seed 1: pad: too few rows in a fold"}
    assert check_proxies(partial, _scores(["mdm", "mmd"]), [], {"a": "perplexity: boom"})["pad"] == "perplexity: boom"
    assert check_proxies(config, _scores(["mdm", "mmd", "pad"]), failures, {}) == {}  # some pad results: ranked


def test_the_cli_ends_a_failed_run_with_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    from synque_ray import cli, pipeline
    from synque_ray.errors import RunFailed

    config = tmp_path / "c.yaml"
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "c").mkdir()
    monkeypatch.chdir(tmp_path)  # the inputs are found when the config is read
    config.write_text(json.dumps({**BASE, "output": str(tmp_path / "out")}))

    def failing(*args, **kwargs):
        raise RunFailed("proxy 'pad' failed for every candidate (first error: x)")

    monkeypatch.setattr(pipeline, "run_job", failing)
    assert cli.main(["score", str(config)]) == 1
    assert capsys.readouterr().err == "error: proxy 'pad' failed for every candidate (first error: x)\n"


# ---------------------------------------------------------------- §4: one set per run, one run at a time


def _tables(tag: str) -> dict:
    import polars as pl

    return {name: pl.DataFrame({"dataset_id": [tag], "value": [len(name)]})
            for name in ("scores.parquet", "rankings.parquet", "row_scores.parquet")}


def test_a_kill_inside_the_final_write_leaves_readers_on_the_old_set(monkeypatch, tmp_path):
    import polars as pl

    from synque_ray.pipeline import drop_unpublished, publish, write_set
    from synque_ray.runfiles import published, run_info, run_table
    from synque_ray.storage import Store

    store = Store(str(tmp_path / "out"))
    write_set(store, _tables("old"), {"started_at": "20261201T000000000000Z", "name": "old"})
    publish(store, "20261201T000000000000Z")
    assert (tmp_path / "out" / "LATEST").read_text() == "20261201T000000000000Z\n"
    real_write, written = Store.write_table, []

    def killed_after_one(self, relative, table):
        if relative.startswith("runs/") and written:
            raise KeyboardInterrupt  # the process dies inside the write of the set
        written.append(relative)
        real_write(self, relative, table)

    monkeypatch.setattr(Store, "write_table", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        write_set(store, _tables("new"), {"started_at": "20261202T000000000000Z", "name": "new"})
    monkeypatch.undo()
    assert written == ["runs/20261202T000000000000Z/scores.parquet"]
    folder = published(str(tmp_path / "out"))
    assert folder.display() == f"{tmp_path}/out/runs/20261201T000000000000Z"
    assert run_info(folder)["name"] == "old"
    for name in ("scores.parquet", "rankings.parquet", "row_scores.parquet"):
        assert run_table(folder, name)["dataset_id"].to_list() == ["old"]
        assert pl.read_parquet(tmp_path / "out" / name)["dataset_id"].to_list() == ["old"]  # the copies too
    drop_unpublished(store)  # the next run (under the lock) removes the half-written set
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["20261201T000000000000Z"]


def test_publishing_switches_the_pointer_and_replaces_every_top_level_copy(tmp_path):
    import polars as pl

    from synque_ray.pipeline import publish, write_set
    from synque_ray.storage import Store

    store = Store(str(tmp_path / "out"))
    old = {**_tables("old"), "lens_scores.parquet": _tables("old")["scores.parquet"]}
    write_set(store, old, {"started_at": "20261201T000000000000Z"})
    publish(store, "20261201T000000000000Z")
    store.write_json("runs/20261201T000000000000Z/evaluation.json", {"run": "old"})
    (tmp_path / "out" / "evaluation.json").write_text("{}")
    write_set(store, _tables("new"), {"started_at": "20261202T000000000000Z"})
    publish(store, "20261202T000000000000Z")
    top = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())
    assert top == ["LATEST", "rankings.parquet", "row_scores.parquet", "run.json", "scores.parquet"]  # old extras gone
    assert pl.read_parquet(tmp_path / "out" / "rankings.parquet")["dataset_id"].to_list() == ["new"]


def test_a_second_run_on_the_same_output_refuses_while_the_lock_is_held(tmp_path):
    import socket

    from synque_ray.errors import UserError
    from synque_ray.storage import LOCK, Store, lock_output

    store = Store(str(tmp_path / "out"))
    first = lock_output(store)
    held = json.loads((tmp_path / "out" / LOCK).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and first.note is None
    with pytest.raises(UserError) as err:
        lock_output(store)
    assert str(err.value) == (
        f"{tmp_path}/out: another run is writing to this output (pid {os.getpid()} on {socket.gethostname()}, "
        f"since {held['started']}); wait for it to end, or delete {tmp_path}/out/.lock if that run is gone")
    first.release()
    assert not (tmp_path / "out" / LOCK).exists()
    lock_output(store).release()  # free again


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    import socket
    import subprocess
    import sys

    from synque_ray.errors import UserError
    from synque_ray.storage import LOCK, Store, lock_output

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then", "token": "x"}))
    lock = lock_output(Store(str(out)))
    assert lock.note == (f"took over the stale lock {out}/.lock: pid {pid} on {socket.gethostname()} (since then) "
                         "is no longer running")
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": "another-host", "started": "then", "token": "x"}))
    with pytest.raises(UserError, match=r"another run is writing to this output \(pid \d+ on another-host"):
        lock_output(Store(str(out)))  # another host's process cannot be checked: never taken over


def test_run_job_refuses_a_locked_output_before_any_work(tmp_path):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError
    from synque_ray.pipeline import run_job
    from synque_ray.storage import Store, lock_output

    write_rows(tmp_path / "pool.jsonl", [f"real row {i}" for i in range(20)])
    (tmp_path / "c").mkdir()
    write_rows(tmp_path / "c" / "a.jsonl", [f"row {i}" for i in range(20)])
    config = parse_config({"name": "t", "output": str(tmp_path / "out"), "proxies": ["mdm"],
                           "real": {"path": str(tmp_path / "pool.jsonl"), "text": "text", "sample_size": 10,
                                    "seeds": [1]},
                           "candidates": {"path": str(tmp_path / "c"), "text": "text"}})
    lock = lock_output(Store(config.output))
    with pytest.raises(UserError, match="another run is writing to this output"):
        run_job(config)
    lock.release()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # nothing embedded, nothing written


# ---------------------------------------------------------------- §2: local models keyed by content


def test_a_local_model_is_keyed_by_its_content(tmp_path, monkeypatch, bundled_model_path):
    import shutil

    from synque_ray import models
    from synque_ray.config import parse_config
    from synque_ray.embed import resolve_embedding
    from synque_ray.stage.embedding import EmbeddingStage

    monkeypatch.setenv("SYNQUE_MODEL_CACHE", str(tmp_path / "model-cache"))
    folder = tmp_path / "minilm"
    shutil.copytree(bundled_model_path, folder)
    path, first = models.resolve_model(str(folder), "embedding.model")
    assert path == str(folder) and first.startswith(f"{folder}#")
    hashed = []
    real_hash = models._file_sha256
    monkeypatch.setattr(models, "_file_sha256", lambda p: hashed.append(p.name) or real_hash(p))
    assert models.resolve_model(str(folder), "embedding.model")[1] == first and hashed == []  # cached: no reading
    config = parse_config({**BASE, "embedding": {"model": str(folder)}})
    payload = EmbeddingStage(config, {}, resolve_embedding(config), None).key_payload(None)

    raw = (folder / "config.json").read_bytes()  # one byte of a config file, replaced in place
    (folder / "config.json").write_bytes(raw.replace(b"768", b"769", 1) if b"768" in raw else raw + b" ")
    again = models.resolve_model(str(folder), "embedding.model")
    assert again[1] != first and hashed == ["config.json"]  # only the changed file is read again
    assert EmbeddingStage(config, {}, resolve_embedding(config), None).key_payload(None) != payload
    (folder / "README.md").write_text("a model card edit")  # not part of the model
    assert models.resolve_model(str(folder), "embedding.model")[1] == again[1]


def test_a_local_llm_folder_is_keyed_by_its_content(tmp_path, monkeypatch):
    from synque_ray.models import resolve_llm

    monkeypatch.setenv("SYNQUE_MODEL_CACHE", str(tmp_path / "model-cache"))
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    first = resolve_llm(str(folder), "lens.scorer")[1]
    (folder / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    assert resolve_llm(str(folder), "lens.scorer")[1] != first


# ---------------------------------------------------------------- end to end, on Ray with the bundled model


def _job(data: Path, candidates: Path, output: Path, **extra) -> dict:
    return {"name": "pinned", "output": str(output), "proxies": ["mdm", "mmd", "pad"],
            "real": {"path": str(data / "real" / "pool.jsonl"), "text": "text", "sample_size": 30, "seeds": [1, 2]},
            "candidates": {"path": str(candidates), "text": "text"},
            "embedding": {"model": "bundled-minilm", "batch_size": 32}, "resources": {"embed_actors": 1}, **extra}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    from synque_ray.demo import write_demo_data

    folder = tmp_path_factory.mktemp("pinned-data")
    write_demo_data(folder, n_candidates=3, rows=40, pool_rows=80)
    return folder


def _candidates(demo_data: Path, tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "candidates"
    shutil.copytree(demo_data / "candidates", folder)
    return folder


def _sorted_scores(output: Path):
    import polars as pl

    return pl.read_parquet(output / "scores.parquet").sort(["proxy", "dataset_id", "seed"])


@pytest.mark.ray
def test_a_file_changed_while_embedding_is_failed_then_scored_as_a_clean_run_scores_it(
        ray_session, demo_data, tmp_path, monkeypatch):
    """The issue's gen09: overwritten by a clean candidate while the run embeds, then restored. Its
    rows must not be scored under the old hash (then reused forever): it fails for this run, and
    the next run scores it exactly as a clean run does."""
    from synque_ray.config import parse_config
    from synque_ray.pipeline import run_job
    from synque_ray.stage import embedding

    candidates = _candidates(demo_data, tmp_path)
    victim, donor = sorted(candidates.iterdir())[-1], sorted(candidates.iterdir())[0]
    original = victim.read_bytes()
    real_embed = embedding.embed_rowsets

    def replaced_while_embedding(*args, **kwargs):  # after hashing, before the rows are embedded
        victim.write_bytes(donor.read_bytes())
        try:
            return real_embed(*args, **kwargs)
        finally:
            victim.write_bytes(original)

    monkeypatch.setattr(embedding, "embed_rowsets", replaced_while_embedding)
    config = parse_config(_job(demo_data, candidates, tmp_path / "out"))
    changed = run_job(config)
    monkeypatch.undo()
    assert changed.failed == {victim.stem: f"{victim} changed during the run; re-run to score it"}
    assert changed.counts["candidates_failed"] == 1 and victim.stem not in changed.rankings["dataset_id"]
    again = run_job(config)
    assert again.failed == {} and again.counts["candidates_scored"] == 1 and again.counts["candidates_reused"] == 2
    run_job(parse_config(_job(demo_data, candidates, tmp_path / "clean")))
    assert _sorted_scores(tmp_path / "out").equals(_sorted_scores(tmp_path / "clean"))


@pytest.mark.ray
def test_a_run_is_published_as_one_set_and_a_kill_while_writing_the_next_leaves_the_old_one(
        ray_session, demo_data, tmp_path, monkeypatch, capsys):
    import yaml

    import synque_ray
    from synque_ray import cli, report
    from synque_ray.report.load import load_run
    from synque_ray.runfiles import published
    from synque_ray.selection import Rules, plan

    candidates = _candidates(demo_data, tmp_path)
    (candidates / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (candidates / "notes.txt").write_text("not data")
    outside = tmp_path / "outside"
    outside.mkdir()
    first_file = sorted(candidates.glob("*.jsonl"))[0]
    (outside / "linked.jsonl").write_bytes(first_file.read_bytes().replace(b'"text": "', b'"text": "linked: '))
    (candidates / "linked.jsonl").symlink_to(outside / "linked.jsonl")
    output = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(_job(demo_data, candidates, output)))

    assert cli.main(["score", str(config)]) == 0
    printed = capsys.readouterr().out
    stamp = (output / "LATEST").read_text().strip()
    skipped = {str(candidates / "gone.jsonl"): f"dangling symlink (points to {tmp_path / 'nowhere.jsonl'})",
               str(candidates / "notes.txt"): "unsupported file type '.txt' (use .json, .jsonl, .parquet, .csv)"}
    for path, why in skipped.items():
        assert f"skipped (not a candidate): {path}: {why}\n" in printed
    info = json.loads((output / "runs" / stamp / "run.json").read_text())
    assert info["skipped_files"] == skipped and "linked" in info["content_hashes"]["candidates"]
    assert info["started_at"] == stamp and info["missing_proxies"] == {}
    page = (output / "runs" / stamp / "report.html").read_bytes()  # the report is part of the set
    assert page == (output / "report.html").read_bytes() and not (output / ".lock").exists()

    def killed(*args, **kwargs):  # the process dies while the next run writes its report
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", killed)
    assert cli.main(["score", str(config)]) == 130
    monkeypatch.undo()
    runs = sorted(p.name for p in (output / "runs").iterdir())
    assert len(runs) == 2 and runs[0] == stamp  # the second set is there, written but not published
    assert (output / "LATEST").read_text().strip() == stamp and not (output / ".lock").exists()
    assert load_run(str(output)).info["started_at"] == stamp
    assert published(str(output)).display() == f"{output}/runs/{stamp}"
    assert json.loads((output / "run.json").read_text())["started_at"] == stamp
    assert (output / "report.html").read_bytes() == page
    choices = plan(str(output), "ensemble", 1, Rules())
    assert choices[0].file.recorded_hash == info["content_hashes"]["candidates"][choices[0].file.dataset_id]
    performance = tmp_path / "perf.csv"
    ids = info["content_hashes"]["candidates"]
    performance.write_text("id,f1\n" + "".join(f"{i},{n / 10}\n" for n, i in enumerate(ids)))
    assert synque_ray.open_run(output).evaluate(str(performance), "id", "f1", 1)["run"] == stamp
    assert json.loads((output / "runs" / stamp / "evaluation.json").read_text())["run"] == stamp

    capsys.readouterr()
    assert cli.main(["score", str(config)]) == 0  # the next run removes the unpublished set
    third = (output / "LATEST").read_text().strip()
    assert sorted(p.name for p in (output / "runs").iterdir()) == [stamp, third]
    assert len(load_run(str(output)).history) == 2
    # evaluated again, as `synque evaluate` did, and said; its report shows it and counts it in its history
    assert (f"note: evaluated against {performance} (id column 'id', metric 'f1'), as the last `synque evaluate` "
            "did: evaluation.json\n") in capsys.readouterr().err  # notes go to stderr
    assert json.loads((output / "evaluation.json").read_text())["run"] == third
    page = (output / "report.html").read_text()
    assert "no evaluation.json" not in page and "history needs at least two" not in page
