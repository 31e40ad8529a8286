"""`copies_real` and `text_chars` in row_scores.parquet: the pure functions against hand-made
cases, the cosine threshold on the bundled model, and a real run whose candidate is 30% U_r."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from synque_ray.rowsignals import COPY_COSINE, exact_copies, near_copies, normalised_text, real_text_set
from synque_ray.stage.embedding import assemble


def test_normalised_text_collapses_whitespace_and_case():
    assert normalised_text("  Tech\tstocks  RISE\n as  inflation cools ") == "tech stocks rise as inflation cools"
    assert normalised_text("STRASSE") == normalised_text("straße")  # casefold, not lower


def test_exact_copies_match_after_normalising_both_sides():
    real = real_text_set(["Oil prices slide", "Bank stocks  fall as the Fed holds rates"])
    texts = ["oil PRICES slide", "Bank stocks fall as the Fed holds rates ", "Oil prices slid", "", "Oil prices"]
    assert exact_copies(texts, real).tolist() == [True, True, False, False, False]


def test_near_copies_is_the_nearest_cosine_against_the_threshold():
    real = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    angle = np.arccos(COPY_COSINE)
    synthetic = np.array([
        [np.cos(angle * 0.9), np.sin(angle * 0.9), 0.0],  # just inside the threshold of real row 0
        [np.cos(angle * 1.1), 0.0, np.sin(angle * 1.1)],  # just outside it
        [0.0, 5.0, 0.1],  # the length does not matter, only the direction
        [0.0, 0.0, 0.0],  # a zero vector copies nothing
    ])
    assert near_copies(synthetic, real).tolist() == [True, False, True, False]
    many = np.random.default_rng(0).normal(size=(2500, 3))  # more rows than one chunk
    loop = [max(x @ r / np.linalg.norm(x) / np.linalg.norm(r) for r in real) >= COPY_COSINE for x in many]
    assert near_copies(many, real).tolist() == loop


def test_assemble_ors_exact_copies_into_the_near_copies_and_counts_characters():
    texts = ["Oil prices slide", "  gold hits a record ", "", "something new"]
    real = {1: real_text_set(["OIL PRICES SLIDE"]), 2: real_text_set(["gold hits a record"])}
    alone = {"seed": None, "scores": [], "rows": {"row_index": [0, 1, 2, 3], "duplicate_group": [-1] * 4}}
    parts = [alone] + [{"seed": seed, "scores": [], "rows": {
        "row_index": [0, 1, 2, 3], "nearest_real_distance": [0.0] * 4,
        "copies_real": [False, False, False, seed == 2]}} for seed in (1, 2)]  # seed 2: an embedding near-copy
    _, rows = assemble("c", parts, real, texts)
    by_seed = {s: rows.filter(pl.col("seed") == s).sort("row_index") for s in (1, 2)}
    assert by_seed[1]["copies_real"].to_list() == [True, False, False, False]
    assert by_seed[2]["copies_real"].to_list() == [False, True, False, True]
    assert by_seed[1]["text_chars"].to_list() == [16, 18, 0, 13]
    assert rows.schema["copies_real"] == pl.Boolean and rows.schema["text_chars"] == pl.Int64


# Sentence pairs for the threshold: a copy with a small edit, a paraphrase (same meaning, other
# words) and a different sentence on the same topic. Only the first kind may reach COPY_COSINE.
EDITS = [
    ("The hotel room was clean and the staff friendly.", "The hotel room was clean and the staff were friendly."),
    ("Would not buy again, it broke after a week.", "Would not buy again; it broke after one week."),
    ("I loved this movie, the acting was superb.", "I loved this movie; the acting was superb."),
    ("This blender is loud but it works well.", "This blender is loud but it works very well."),
]
PARAPHRASES = [
    ("The battery lasts all day and charges quickly.",
     "Charging is fast and a single charge gets me through the whole day."),
    ("I loved this movie, the acting was superb.", "What a film: I adored it, and the cast performed brilliantly."),
    ("Terrible service, the food arrived cold.", "The staff were awful and our meals were lukewarm when served."),
    ("This blender is loud but it works well.", "It makes a lot of noise, yet the blender does its job nicely."),
    ("Would not buy again, it broke after a week.",
     "It stopped working within seven days, so I won't purchase it again."),
]
SAME_TOPIC = [
    ("The battery lasts all day and charges quickly.", "The battery drains fast and takes hours to charge."),
    ("I loved this movie, the acting was superb.", "I loved this movie, the soundtrack was superb."),
    ("Terrible service, the food arrived cold.", "Terrible service, the waiter forgot our drinks."),
    ("The hotel room was clean and the staff friendly.", "The hotel room was dirty and the staff rude."),
    ("This blender is loud but it works well.", "This toaster is loud but it works well."),
]


def test_the_threshold_separates_edited_copies_from_paraphrases_on_the_bundled_model(bundled_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(bundled_model_path, device="cpu")

    def flagged(pairs):
        left = model.encode([a for a, _ in pairs])
        return [bool(near_copies(left[i:i + 1], model.encode([b]))[0]) for i, (_, b) in enumerate(pairs)]

    assert flagged(EDITS) == [True] * len(EDITS)
    assert flagged(PARAPHRASES) == [False] * len(PARAPHRASES)
    assert flagged(SAME_TOPIC) == [False] * len(SAME_TOPIC)


@pytest.mark.ray
def test_a_candidate_that_is_30_percent_u_r_is_flagged_within_5_points(ray_session, tmp_path):
    from synque_ray.config import parse_config
    from synque_ray.demo import candidate_rows, write_demo_data
    from synque_ray.pipeline import run_job

    write_demo_data(tmp_path, n_candidates=1, rows=40, pool_rows=80)
    pool = [json.loads(line)["text"] for line in (tmp_path / "real" / "pool.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(3)
    copied = [pool[i] for i in rng.choice(len(pool), 30, replace=False)]
    spaced = ["  " + t.replace(" ", "   ") + " " for t in copied[20:]]
    copied = copied[:10] + [t.upper() for t in copied[10:20]] + spaced
    texts = candidate_rows(0.0, 70, np.random.default_rng(11)) + copied
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    is_copy = [i >= 70 for i in order]
    (tmp_path / "candidates" / "copier.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    config = parse_config({
        "name": "copies", "output": str(tmp_path / "out"),
        "real": {"path": str(tmp_path / "real" / "pool.jsonl"), "text": "text", "sample_size": 80, "seeds": [1, 2]},
        "candidates": {"path": str(tmp_path / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 64}, "proxies": ["mdm", "mmd"],
        "resources": {"embed_actors": 1},
    })
    run_job(config)
    rows = pl.read_parquet(tmp_path / "out" / "row_scores.parquet")
    assert rows.schema["copies_real"] == pl.Boolean and rows.schema["text_chars"] == pl.Int64
    copier = rows.filter(pl.col("dataset_id") == "copier")
    for seed in (1, 2):
        mine = copier.filter(pl.col("seed") == seed).sort("row_index")
        assert mine.height == 100
        assert abs(mine["copies_real"].mean() - 0.30) <= 0.05, seed
        assert mine.filter(pl.Series(is_copy))["copies_real"].all()  # every planted copy is caught
        assert mine["text_chars"].to_list() == [len(t.strip()) for t in texts]
    clean = rows.filter(pl.col("dataset_id") != "copier")
    assert clean["copies_real"].mean() <= 0.05
