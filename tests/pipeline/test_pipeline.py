"""The pipeline end to end through Ray with the bundled model, on small generated data."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from synque_ray.config import parse_config
from synque_ray.demo import write_demo_data
from synque_ray.findings import FINDING_COLUMNS
from synque_ray.pipeline import run_job
from synque_ray.proxies.mauve import mauve_score
from synque_ray.proxies.mdm import mdm_of_rows
from synque_ray.proxies.mmd import mmd_squared
from synque_ray.proxies.pad import pad
from synque_ray.reading import read_texts, sample_pool

pytestmark = pytest.mark.ray

ROWS, SAMPLE, SEEDS = 40, 30, [1, 2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_demo_data(folder, n_candidates=4, rows=ROWS, pool_rows=80)
    return folder


def make_config(data_dir, output, **overrides):
    raw = {
        "name": "pipeline-test",
        "output": str(output),
        "real": {"path": str(data_dir / "real" / "pool.jsonl"), "text": "text", "sample_size": SAMPLE, "seeds": SEEDS},
        "candidates": {"path": str(data_dir / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 32},
        "proxies": ["mdm", "mmd", "pad", "mauve"],  # the defaults but the fluency screen (proxies/test_fluency.py)
        "resources": {"embed_actors": 1},
        **overrides,
    }
    return parse_config(raw)


@pytest.fixture(scope="module")
def first_run(ray_session, data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "run"
    config = make_config(data_dir, output)
    return config, run_job(config)


def test_outputs_have_the_spec_schema(first_run):
    config, summary = first_run
    scores = pl.read_parquet(f"{config.output}/scores.parquet")
    rankings = pl.read_parquet(f"{config.output}/rankings.parquet")
    assert scores.columns == ["dataset_id", "proxy", "seed", "raw", "score"]
    assert rankings.columns[:10] == ["dataset_id", "proxy", "score_mean", "score_std", "rank", "rank_low",
                                     "rank_high", "tied_with_best", "p_best", "p_top"]
    assert set(FINDING_COLUMNS) <= set(rankings.columns)  # each candidate's findings, on every row of it
    ensemble = json.loads(Path(config.output, "run.json").read_text())["ensemble"]
    assert ensemble["method"] == "decorrelated" and sum(ensemble["weights"].values()) == pytest.approx(1.0)
    assert set(scores["proxy"]) == {"mdm", "mmd", "pad", "mauve", "ensemble"}
    assert scores.height == 4 * 5 * len(SEEDS)
    for proxy, sign in [("mdm", 1), ("mmd", -1), ("pad", -1), ("mauve", 1)]:
        part = scores.filter(pl.col("proxy") == proxy)
        assert np.allclose(part["score"], sign * part["raw"])
    for proxy in ["mdm", "mmd", "pad", "mauve", "ensemble"]:
        assert sorted(rankings.filter(pl.col("proxy") == proxy)["rank"]) == [1, 2, 3, 4]
    run = json.loads(open(f"{config.output}/run.json").read())
    assert run["counts"]["candidates_total"] == 4
    assert run["config"]["pad"]["train_rows"] == 20  # auto, once: a 30-row U_r keeps 24 per fold, 20 inside the gate
    assert run["counts"]["candidates_scored"] == 4
    assert run["counts"]["rows_embedded"] == 4 * ROWS + len(SEEDS) * SAMPLE
    assert run["counts"]["rows_from_cache"] == 0
    assert {"read", "embed", "proxies", "reduce", "total"} <= set(run["timings"])
    assert run["models"]["embedding"].startswith("bundled-minilm@")
    history = pl.read_parquet(f"{summary.run_dir}/scores.parquet")
    assert history.equals(scores)


def test_scores_equal_a_direct_computation(first_run, bundled_model_path):
    """Same model, same definitions, no Ray: the engine must give the same numbers."""
    from sentence_transformers import SentenceTransformer

    config, summary = first_run
    model = SentenceTransformer(bundled_model_path, device="cpu")
    pool = read_texts(config.real.path, "text")
    candidate = sorted(Path(config.candidates.path).iterdir())[2]
    synthetic = model.encode(read_texts(candidate, "text"))
    scores = summary.scores
    for seed in SEEDS:
        real = model.encode(sample_pool(pool, SAMPLE, seed, "pool"))
        expected = {
            "mdm": mdm_of_rows(synthetic, k=3, rows=20),
            "mmd": mmd_squared(synthetic, real, estimator="unbiased"),
            "pad": pad(synthetic, real, seed=seed, train_rows=20),  # the run's resolved training size
            "mauve": mauve_score(synthetic, real, seed=seed),
        }
        for proxy, value in expected.items():
            got = scores.filter(
                (pl.col("dataset_id") == candidate.stem) & (pl.col("proxy") == proxy) & (pl.col("seed") == seed)
            )["raw"].item()
            assert got == pytest.approx(value, rel=1e-3, abs=1e-4), proxy


def test_rerun_embeds_nothing_and_reuses_every_candidate(first_run):
    config, summary = first_run
    again = run_job(config)
    assert again.counts["rows_embedded"] == 0
    assert again.counts["candidates_scored"] == 0
    assert again.counts["candidates_reused"] == 4
    assert again.rankings.equals(summary.rankings)


def test_cache_alone_serves_a_new_output_folder(first_run, data_dir, tmp_path):
    config, summary = first_run
    other = make_config(data_dir, tmp_path / "other", cache_dir=config.cache_location)
    result = run_job(other)
    assert result.counts["rows_embedded"] == 0
    assert result.counts["rows_from_cache"] == 4 * ROWS + len(SEEDS) * SAMPLE
    assert result.counts["candidates_scored"] == 4
    assert result.rankings.equals(summary.rankings)


def test_changed_candidate_is_scored_alone(ray_session, data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    config = make_config(data, tmp_path / "out")
    run_job(config)
    changed = sorted((data / "candidates").iterdir())[0]
    lines = changed.read_text().splitlines()
    changed.write_text("\n".join(lines[:-1]) + "\n")  # drop one row
    second = run_job(config)
    assert second.counts["candidates_scored"] == 1
    assert second.counts["candidates_reused"] == 3
    assert second.counts["rows_embedded"] == ROWS - 1
    fresh = run_job(config, fresh=True)
    assert fresh.counts["candidates_scored"] == 4
    assert fresh.counts["rows_embedded"] == 4 * ROWS - 1 + len(SEEDS) * SAMPLE
    assert fresh.rankings.equals(second.rankings)


def test_corrupt_committed_files_are_redone(ray_session, data_dir, tmp_path):
    config = make_config(data_dir, tmp_path / "out")
    first = run_job(config)
    results = sorted((tmp_path / "out" / "results").iterdir())
    results[0].write_bytes(results[0].read_bytes()[:40])  # a truncated result, as a crash might leave
    embeddings = sorted((tmp_path / "out" / "cache").rglob("*.parquet"))
    embeddings[0].write_bytes(b"not parquet")
    second = run_job(config)
    assert second.counts["candidates_scored"] >= 1
    assert second.rankings.equals(first.rankings)
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_mdm_is_computed_once_per_candidate(first_run):
    _, summary = first_run
    mdm_scores = summary.scores.filter(pl.col("proxy") == "mdm")
    per_candidate = mdm_scores.group_by("dataset_id").agg(pl.col("raw").n_unique().alias("values"))
    assert per_candidate["values"].to_list() == [1] * 4  # the same value under every seed


def test_row_scores_cover_every_row_of_every_seed(first_run):
    config, _ = first_run
    rows = pl.read_parquet(f"{config.output}/row_scores.parquet")
    assert rows.columns == ["dataset_id", "seed", "row_index", "text_hash", "p_synthetic", "nearest_real_distance",
                            "duplicate_group", "copies_real", "copies_eval", "text_chars"]
    assert rows["copies_eval"].null_count() == rows.height  # the config names no contamination set
    assert rows.height == 4 * ROWS * len(SEEDS)
    assert rows.group_by("dataset_id", "seed").agg(pl.col("row_index").n_unique())["row_index"].to_list() == [ROWS] * 8
    assert rows["p_synthetic"].is_between(0, 1).all() and (rows["nearest_real_distance"] >= 0).all()
    candidate = sorted(Path(config.candidates.path).iterdir())[0]
    texts = read_texts(candidate, "text")
    first = rows.filter((pl.col("dataset_id") == candidate.stem) & (pl.col("row_index") == 5)).row(0, named=True)
    import hashlib

    assert first["text_hash"] == hashlib.sha256(texts[5].encode()).hexdigest()[:16]


def test_candidate_sample_size_subsamples_each_seed(ray_session, data_dir, tmp_path):
    config = make_config(data_dir, tmp_path / "sampled", candidates={
        "path": str(data_dir / "candidates"), "text": "text", "sample_size": 25})
    summary = run_job(config)
    rows = pl.read_parquet(f"{config.output}/row_scores.parquet")
    per_seed = rows.group_by("dataset_id", "seed").agg(pl.col("row_index").sort().alias("rows"))
    assert all(len(r) == 25 for r in per_seed["rows"])
    one = per_seed.filter(pl.col("dataset_id") == per_seed["dataset_id"][0]).sort("seed")["rows"].to_list()
    assert one[0] != one[1]  # a different subsample per seed
    assert summary.counts["candidates_scored"] == 4


def test_perplexity_stage_scores_every_seed_and_is_reused(ray_session, data_dir, tmp_path):
    from synque_ray.perplexity import perplexity_after_finetune, resolve_model

    tiny = {"steps": 2, "batch_size": 4, "max_length": 16, "eval_rows": 6, "min_train_rows": 4}
    config = make_config(data_dir, tmp_path / "ppl", proxies=["mdm", "perplexity"], perplexity=tiny)
    summary = run_job(config)
    scores = pl.read_parquet(tmp_path / "ppl" / "scores.parquet").filter(pl.col("proxy") == "perplexity")
    assert scores.height == 4 * len(SEEDS) and scores["raw"].is_finite().all()
    assert (scores["score"] == -scores["raw"]).all()
    # the stage's numbers are the pure function's on the same rows
    first = scores.sort("dataset_id").row(0, named=True)
    pool = read_texts(data_dir / "real" / "pool.jsonl", "text")
    real = {seed: sample_pool(pool, SAMPLE, seed, "pool") for seed in SEEDS}
    texts = read_texts(data_dir / "candidates" / f"{first['dataset_id']}.jsonl", "text")
    direct = perplexity_after_finetune(resolve_model(config.perplexity)[0], texts, real, config.perplexity)
    assert scores.filter(pl.col("dataset_id") == first["dataset_id"]).sort("seed")["raw"].to_list() == \
        pytest.approx([direct[s].perplexity for s in SEEDS], rel=1e-6)
    rankings = pl.read_parquet(tmp_path / "ppl" / "rankings.parquet")
    assert set(rankings["proxy"]) == {"mdm", "perplexity", "ensemble"}
    assert (rankings["rank_low"] <= rankings["rank"]).all() and (rankings["rank"] <= rankings["rank_high"]).all()
    assert summary.counts["stages"]["perplexity"]["scored"] == 4
    again = run_job(config)
    assert again.counts["stages"]["perplexity"] == {"scored": 0, "reused": 4, "failed": 0, "skipped": 0}
