"""Where LENS rubrics come from (`lens/rubric_source.py`): the writer a config resolves to, the
rubric file's checks, the keys that decide reuse, and `prepare`'s reuse, twins and failures.

No model runs here: a local model is a folder holding a config.json (resolved by its content), and
the writers behind an endpoint or Ray are replaced by doubles that record what they are asked."""

from __future__ import annotations

import json

import pytest

from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.errors import UserError
from synque_ray.lens import rubric_source
from synque_ray.lens.rubric import Rubric
from synque_ray.lens.rubric_source import RubricSource
from synque_ray.models import local_model_id
from synque_ray.reading import RowSet
from synque_ray.storage import Store

ENDPOINT = {"openai_base_url": "http://127.0.0.1:9/v1", "model": "writer-7b"}
RUBRIC = {"commonalities": ["short news headlines"], "real_vs_synthetic": ["real rows name firms"],
          "synthetic_vs_real": ["synthetic rows repeat verbs"]}
REAL = {1: RowSet("real-1", ["Shares of Acme rose 3%", "Bolt Corp cuts jobs"]),
        2: RowSet("real-2", ["Zed Inc beats forecasts", "Oil slips on supply"])}


def model_folder(tmp_path):
    folder = tmp_path / "scorer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 4, "num_key_value_heads": 2,
                                                    "hidden_size": 64, "num_hidden_layers": 2}))
    return folder


def rubric(tag: str) -> Rubric:
    return Rubric([f"common {tag}"], [f"real {tag}"], [f"synthetic {tag}"])


class Recorder:
    """`write_rubrics` replaced: a rubric per request (or the reason given for a candidate), and every
    request kept."""

    def __init__(self, fail: dict[str, str] | None = None):
        self.requests: list = []
        self.fail = fail or {}

    def __call__(self, writer, requests, task, n, retries):
        self.requests.extend(requests)
        self.writer, self.task, self.n, self.retries = writer, task, n, retries
        return [self.fail.get(r.dataset_id) or rubric(f"{r.dataset_id}/{r.seed}") for r in requests]


def test_the_writer_is_the_file_the_endpoint_or_a_local_model(tmp_path):
    path = tmp_path / "rubric.json"
    path.write_text(json.dumps(RUBRIC))
    resources = ResourcesConfig()
    from_file = RubricSource(LensConfig(rubric_file=str(path), rubric_writer=ENDPOINT), resources)
    assert (from_file.model_id, from_file.path, from_file.endpoint) == (f"file:{path}", None, ENDPOINT)
    endpoint = RubricSource(LensConfig(rubric_writer=ENDPOINT), resources)
    assert (endpoint.model_id, endpoint.path, endpoint.endpoint) == ("writer-7b@http://127.0.0.1:9/v1", None, ENDPOINT)
    folder = model_folder(tmp_path)
    local = RubricSource(LensConfig(rubric_writer=str(folder)), resources)
    assert (local.path, local.model_id, local.endpoint) == (str(folder.resolve()), local_model_id(folder), None)


def test_a_missing_writer_model_is_named_by_its_config_key(tmp_path):
    with pytest.raises(UserError, match=r"^lens\.rubric_writer: model path '.*nowhere' does not exist$"):
        RubricSource(LensConfig(rubric_writer=str(tmp_path / "nowhere")), ResourcesConfig())
    file = tmp_path / "weights.bin"
    file.write_bytes(b"0")
    with pytest.raises(UserError, match=r"^lens\.rubric_writer: model path .* is not a folder"):
        RubricSource(LensConfig(rubric_writer=str(file)), ResourcesConfig())


def test_the_rubric_file_must_hold_one_for_every_candidate(tmp_path):
    a, b = RowSet("a", ["x"]), RowSet("b", ["y"])
    per_id = tmp_path / "per_id.json"
    per_id.write_text(json.dumps({"a": RUBRIC}))
    source = RubricSource(LensConfig(rubric_file=str(per_id), rubric_writer=ENDPOINT), ResourcesConfig())
    assert source.from_file([a])["a"].commonalities == RUBRIC["commonalities"]
    with pytest.raises(UserError, match=r"per_id\.json: no rubric for candidate 'b'$"):
        source.from_file([a, b])
    assert RubricSource(LensConfig(rubric_writer=ENDPOINT), ResourcesConfig()).from_file([a, b]) is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match=r"broken\.json: lens\.rubric_file is not valid JSON$"):
        RubricSource(LensConfig(rubric_file=str(broken), rubric_writer=ENDPOINT), ResourcesConfig()).from_file([a])


def test_a_rubrics_key_changes_with_everything_it_depends_on_and_nothing_else():
    candidate, real = RowSet("a", ["x", "y"]), REAL[1]
    base = RubricSource(LensConfig(rubric_writer=ENDPOINT), ResourcesConfig())
    key = base.key(candidate, real, "w")
    assert base.key(RowSet("renamed", ["x", "y"]), real, "w") == key  # by content, not by name
    assert RubricSource(LensConfig(rubric_writer=ENDPOINT, batch_rows=7), ResourcesConfig()).key(
        candidate, real, "w") == key  # a judging setting does not touch the rubric
    changed = [base.key(RowSet("a", ["x", "z"]), real, "w"), base.key(candidate, REAL[2], "w"),
               base.key(candidate, real, "other writer")]
    for setting in ({"rubric_points": 5}, {"rubric_sample_size": 50}, {"task": "sentiment"}, {"rubric_retries": 0}):
        changed.append(RubricSource(LensConfig(rubric_writer=ENDPOINT, **setting), ResourcesConfig()).key(
            candidate, real, "w"))
    assert key not in changed and len(set(changed)) == len(changed)


def test_prepare_writes_what_is_missing_once_per_key_and_reuses_it_by_content(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(rubric_source, "write_rubrics", recorder)
    store = Store(str(tmp_path / "out"))
    source = RubricSource(LensConfig(rubric_writer=ENDPOINT, rubric_points=4, task="sentiment"), ResourcesConfig())
    a, twin, b = RowSet("a", ["one", "two"]), RowSet("a-copy", ["one", "two"]), RowSet("b", ["three"])
    first = source.prepare([a, twin, b], REAL, store, fresh=False)
    # a and its twin share a key per seed: two candidates' worth of rubrics are written, not three
    assert sorted((r.dataset_id, r.seed) for r in recorder.requests) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert (recorder.task, recorder.n, recorder.writer.model) == ("sentiment", 4, "writer-7b")
    assert (first.written, first.reused, first.failed) == (4, 0, {})
    assert first.by_pair[("a-copy", 2)] is first.by_pair[("a", 2)]
    assert first.by_pair[("b", 1)].commonalities == ["common b/1"]
    assert first.by_pair[("b", 1)].source == "writer-7b@http://127.0.0.1:9/v1"
    saved = json.loads((tmp_path / "out" / "rubrics" / "a-copy" / "seed2.json").read_text())
    assert saved["commonalities"] == ["common a/2"] and saved["key"] == source.key(twin, REAL[2], source.model_id)

    recorder.requests.clear()
    renamed = RowSet("b-renamed", ["three"])  # b's file under a new name: its rubric is found by its key
    again = source.prepare([a, renamed], REAL, store, fresh=False)
    assert recorder.requests == [] and (again.written, again.reused) == (0, 4)
    assert again.by_pair[("b-renamed", 1)].commonalities == ["common b/1"]
    assert (tmp_path / "out" / "rubrics" / "b-renamed" / "seed1.json").is_file()  # copied under its own id

    fresh = source.prepare([a], REAL, store, fresh=True)
    assert (fresh.written, fresh.reused) == (2, 0) and len(recorder.requests) == 2


def test_a_candidate_without_a_usable_rubric_fails_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(rubric_source, "write_rubrics", Recorder(fail={"b": "lens: no list for 'b'"}))
    source = RubricSource(LensConfig(rubric_writer=ENDPOINT), ResourcesConfig())
    out = source.prepare([RowSet("a", ["one"]), RowSet("b", ["two"])], REAL, Store(str(tmp_path)), fresh=False)
    assert out.failed == {"b": "lens: no list for 'b'"}
    assert sorted(out.by_pair) == [("a", 1), ("a", 2)]
    assert not (tmp_path / "rubrics" / "b").exists()  # a failure is never saved as a rubric


def test_a_rubric_file_is_used_for_every_seed_and_keyed_by_its_content(tmp_path, monkeypatch):
    monkeypatch.setattr(rubric_source, "write_rubrics", Recorder(fail={"a": "never asked"}))
    path = tmp_path / "rubric.json"
    path.write_text(json.dumps(RUBRIC))
    store = Store(str(tmp_path / "out"))
    source = RubricSource(LensConfig(rubric_file=str(path), rubric_writer=ENDPOINT), ResourcesConfig())
    a = RowSet("a", ["one"])
    first = source.prepare([a], REAL, store, fresh=False)
    assert (first.written, first.reused, first.failed) == (0, 0, {})
    assert first.by_pair[("a", 2)].real_vs_synthetic == RUBRIC["real_vs_synthetic"]
    assert source.prepare([a], REAL, store, fresh=False).reused == 2
    path.write_text(json.dumps({**RUBRIC, "commonalities": ["edited"]}))  # an edited file is taken up
    edited = source.prepare([a], REAL, store, fresh=False)
    assert edited.reused == 0 and edited.by_pair[("a", 1)].commonalities == ["edited"]


def test_a_local_writer_runs_on_ray_and_names_a_pair_that_got_nothing(tmp_path, monkeypatch):
    asked = {}

    def on_ray(settings, model_id, rows, task, n, retries):
        asked.update(settings=settings, model_id=model_id, rows=rows)
        return {0: rubric("first")}  # the second pair gets nothing back

    monkeypatch.setattr(rubric_source, "write_rubrics_on_ray", on_ray)
    folder = model_folder(tmp_path)
    source = RubricSource(LensConfig(rubric_writer=str(folder), rubric_sample_size=1), ResourcesConfig())
    out = source.prepare([RowSet("a", ["one", "two"])], REAL, Store(str(tmp_path / "out")), fresh=False)
    assert asked["model_id"] == source.model_id and asked["settings"]["engine"]["model"] == str(folder.resolve())
    assert [(r["dataset_id"], r["seed"]) for r in asked["rows"]] == [("a", 1), ("a", 2)]
    assert all(len(json.loads(r["real_rows"])) == 1 == len(json.loads(r["synthetic_rows"])) for r in asked["rows"])
    assert out.failed == {"a": "lens: no rubric came back for candidate 'a' seed 2"}
