"""`copies_real` and `text_chars` in row_scores.parquet: the pure functions against hand-made
cases, the cosine threshold on the bundled model, and a real run whose candidate is 30% U_r."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from synque_ray.rowsignals import (COPY_COSINE, COSINE_FLOOR, RUN_WORDS, copies, copy_words, exact_copies,
                                   few_words_changed, near_copies, normalised_text, real_text_set, reference,
                                   word_edit_distance)
from synque_ray.proxy_task import TaskSpec, score_pair
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


def _unit_rows(*cosines_to_first: float, plane: int = 1) -> np.ndarray:
    """Unit rows in 3-d whose cosine with the first axis is each given value, in the plane of
    the first axis and axis `plane` (1 or 2)."""
    rows = np.zeros((len(cosines_to_first), 3))
    rows[:, 0] = cosines_to_first
    rows[:, plane] = np.sqrt(np.maximum(0.0, 1 - rows[:, 0] ** 2))
    return rows


def _spread(n: int, seed: int = 0) -> np.ndarray:
    """n rows with small pairwise cosines (random directions in 64-d: |cos| < ~.5)."""
    return np.random.default_rng(seed).normal(size=(n, 64))


def test_word_edit_distance_counts_replaced_deleted_and_inserted_words():
    a = copy_words("Oil prices slide, as the dollar climbs!")
    assert a == ("oil", "prices", "slide", "as", "the", "dollar", "climbs")
    assert copy_words("  $TSLA - Tesla  ") == ("tsla", "tesla")  # marks at the ends go, a lone mark is no word
    assert word_edit_distance(a, a) == 0
    assert word_edit_distance(a, copy_words("Oil prices jump as the dollar climbs")) == 1
    assert word_edit_distance(a, copy_words("Oil prices as the dollar climbs")) == 1
    assert word_edit_distance(a, copy_words("Oil prices slide as the US dollar climbs")) == 1
    assert word_edit_distance(a, copy_words("prices slide as the dollar climbs again")) == 2
    assert word_edit_distance((), a) == len(a) and word_edit_distance(a, ()) == len(a)


def test_few_words_changed_allows_one_word_per_ten_and_keeps_three():
    ten = tuple(f"w{i}" for i in range(10))
    assert few_words_changed(ten, ("x", *ten[1:]))  # one of ten replaced
    assert not few_words_changed(ten, ("x", "y", *ten[2:]))  # two of ten
    twenty = tuple(f"w{i}" for i in range(20))
    assert few_words_changed(twenty, ("x", "y", *twenty[2:]))  # two of twenty
    assert not few_words_changed(twenty, ("x", "y", "z", *twenty[3:]))
    assert few_words_changed(("a", "b", "c", "d"), ("a", "b", "c", "x"))  # three of four left
    assert not few_words_changed(("a", "b", "c"), ("a", "b", "x"))  # a 3-word row with one changed is another row
    assert not few_words_changed(("a", "b"), ("a", "b", "c"))


def test_the_reference_cosine_is_the_99th_percentile_of_its_rows_nearest_word_neighbours():
    # 200 rows of distinct words; rows 2k and 2k+1 (k < 4) differ by one word, at cosine .9, .8, .7, .6.
    texts = [f"alpha{i} beta{i} gamma{i} delta{i}" for i in range(200)]
    vectors = _spread(200, seed=1)
    for k, cos in enumerate((0.9, 0.8, 0.7, 0.6)):
        texts[2 * k + 1] = texts[2 * k].replace("alpha", "omega")
        base, other = np.eye(64)[2 * k], np.eye(64)[2 * k + 32]
        vectors[2 * k], vectors[2 * k + 1] = base, cos * base + np.sqrt(1 - cos * cos) * other
    vectors[10] = vectors[12] + 0.01 * vectors[10]  # close in meaning, no word in common: not counted
    ref = reference(texts, vectors)
    word_neighbours = np.full(200, -1.0)
    word_neighbours[:8] = np.repeat([0.9, 0.8, 0.7, 0.6], 2)
    assert ref.cosine == pytest.approx(np.sort(word_neighbours)[int(np.ceil(0.99 * 199))])  # the 2nd highest: .9
    assert ref.texts == frozenset(normalised_text(t) for t in texts) and ref.run == RUN_WORDS
    assert reference(texts[8:], vectors[8:]).cosine == COSINE_FLOOR  # no word neighbours: the floor


def test_the_reference_cosine_is_floored_capped_and_blind_to_exact_twins():
    twins = reference(["Oil slides", "oil  SLIDES", "Gold hits a record"], _unit_rows(1.0, 1.0, 0.0))
    assert twins.cosine == COSINE_FLOOR  # the twins are one row: the only other row is far
    close = reference(["Oil prices slide today", "Oil prices slid today", "Gold"], _unit_rows(0.99, 0.98, 0.0))
    assert close.cosine == COPY_COSINE  # rows this close in the reference: rule 3 asks what rule 2 does
    assert reference(["one row"], _unit_rows(1.0)).cosine == COPY_COSINE  # nothing to learn from
    with pytest.raises(ValueError, match="^reference: 2 texts but 1 embeddings$"):
        reference(["a", "b"], _unit_rows(1.0))


TEMPLATE = "{} EPS beats by $0.01, beats on revenue in the third quarter"


def test_copies_finds_exact_and_one_word_changed_copies_but_not_other_rows_of_a_template():
    # The reference: distinct rows of one domain, a template filled twice among them. Their nearest
    # neighbours' cosines (about .7 for the template mates) set rule 3's threshold.
    others = [f"Company {i} opens a plant number {i} in a new city" for i in range(98)]
    texts = [TEMPLATE.format("Blackbaud"), TEMPLATE.format("Euroseas"), *others]
    vectors = np.vstack([_unit_rows(1.0, 0.7) @ np.eye(3, 64), _spread(98, seed=2)])
    ref = reference(texts, vectors)
    assert ref.cosine == pytest.approx(0.7, abs=1e-9)
    rows = [
        "  blackbaud EPS beats by $0.01, BEATS on revenue in the third quarter ",  # exact after normalising
        TEMPLATE.format("Blackbaud").replace("third", "fourth"),  # one word replaced: cosine .8
        TEMPLATE.format("Blackbaud").replace(" in the", " in"),  # one word deleted: cosine .75
        TEMPLATE.format("Tyson"),  # another row of the template: cosine .69, below what the mates reach
        TEMPLATE.format("Blackbaud").replace("third", "fourth").replace("0.01", "0.02"),  # two of eleven changed
        "Blackbaud",  # shares one word
    ]
    # Away from Euroseas' row (plane 2), so that only Blackbaud's row is near.
    row_vectors = np.vstack([np.zeros((1, 64)), _unit_rows(0.8, 0.75, 0.69, 0.9, 0.99, plane=2) @ np.eye(3, 64)])
    assert copies(rows, row_vectors, ref).tolist() == [True, True, True, False, False, True]
    # The old rule (exact text, or cosine >= .95) finds the exact copy and the last row only.
    old = exact_copies(rows, ref.texts) | near_copies(row_vectors, vectors)
    assert old.tolist() == [True, False, False, False, False, True]


def test_a_long_run_of_an_evaluation_row_is_a_copy_whatever_the_cosine():
    question = "which of the following best describes the role of the central bank in setting the short term rate"
    ref = reference([question, "a different question about bonds and yields"], _unit_rows(1.0, 0.0))
    words = question.split()
    rows = [" ".join(words[:RUN_WORDS]) + " ? answer: it sets the policy rate, which banks follow",  # 13 words of it
            " ".join(words[:RUN_WORDS - 1]) + " ? answer: it sets the policy rate, which banks follow"]  # 12
    assert copies(rows, _unit_rows(0.0, 0.0, plane=2), ref).tolist() == [True, False]


def test_the_run_grows_past_the_runs_the_references_own_rows_share():
    shared = " ".join(f"w{i}" for i in range(15))  # two distinct reference rows share a 15-word run
    ref = reference([f"alpha {shared} beta", f"gamma {shared} delta", "other"], _unit_rows(1.0, 1.0, 1.0))
    assert ref.run == 16  # with 3 rows, no row may share a run: one word longer than theirs
    assert copies([f"zeta {shared} eta", f"zeta {shared} beta"], _unit_rows(0.0, 0.0, plane=2), ref).tolist() == [
        False, True]  # the second shares 16 words with the first reference row


def test_copies_in_chunks_matches_the_rules_row_by_row():
    rng = np.random.default_rng(4)
    base = [" ".join(f"w{rng.integers(40)}" for _ in range(rng.integers(3, 15))) for _ in range(6)]
    ref_vectors = rng.normal(size=(6, 8))
    ref = reference(base, ref_vectors)
    texts, vectors = [], []
    for i in range(2500):  # more rows than one chunk: edited copies, strangers, exact copies
        j = int(rng.integers(6))
        words = base[j].split()
        words[int(rng.integers(len(words)))] = f"w{rng.integers(40)}"
        texts.append(base[j].upper() if i % 7 == 0 else " ".join(words) if i % 2 else "stranger row " + str(i))
        vectors.append(ref_vectors[j] + rng.normal(scale=rng.uniform(0.1, 1.5), size=8))
    vectors = np.array(vectors)

    def by_hand(text: str, vector: np.ndarray) -> bool:
        for r_text, r_vector in zip(base, ref_vectors, strict=True):
            cos = vector @ r_vector / np.linalg.norm(vector) / np.linalg.norm(r_vector)
            a, b = copy_words(text), copy_words(r_text)
            runs = {a[k:k + ref.run] for k in range(len(a) - ref.run + 1)}
            if (normalised_text(text) == normalised_text(r_text) or cos >= COPY_COSINE
                    or (cos >= ref.cosine and few_words_changed(a, b))
                    or runs & {b[k:k + ref.run] for k in range(len(b) - ref.run + 1)}):
                return True
        return False

    found = copies(texts, vectors, ref)
    assert found.tolist() == [by_hand(t, v) for t, v in zip(texts, vectors, strict=True)]
    assert 0.2 < found.mean() < 0.8  # both kinds are there
    with pytest.raises(ValueError, match="^copies: 2 texts but 1 embeddings$"):
        copies(["a", "b"], vectors[:1], ref)


def test_a_pair_task_marks_the_copies_of_its_u_r_and_of_the_evaluation_set_among_its_rows():
    texts = ["Oil prices slide", "  gold hits a record ", "", "something new"]
    embeddings = np.array([[0.0, 0.0, 1.0]] * 3 + [[0.0, 1.0, 0.0]])  # row 3: an embedding near-copy of U_r's row 1
    u_r = reference(["OIL PRICES SLIDE", "a row far from the others"], _unit_rows(1.0, 0.0))
    evaluation = reference(["Something new", "another test row"], _unit_rows(1.0, 0.9, plane=2))
    part = score_pair("c", 1, embeddings, u_r.unit, TaskSpec({}, None, 0), texts=texts, copies_of=u_r,
                      evaluation=evaluation)
    assert part["rows"]["copies_real"] == [True, False, False, True]
    assert part["rows"]["copies_eval"] == [False, False, False, True]
    sub = score_pair("c", 1, embeddings, u_r.unit, TaskSpec({}, 2, 0), texts=texts, copies_of=u_r)
    index = sub["rows"]["row_index"]  # a seeded subsample of 2 rows: the marks follow the rows
    assert len(index) == 2 and sub["rows"]["copies_real"] == [[True, False, False, True][i] for i in index]
    assert "copies_eval" not in sub["rows"]  # no evaluation set: the column is left to be null
    alone = score_pair("c", None, embeddings, None, TaskSpec({}, None, 0))
    assert set(alone["rows"]) == {"row_index", "duplicate_group"}


def test_assemble_counts_characters_and_leaves_copies_eval_null_without_an_evaluation_set():
    texts = ["Oil prices slide", "  gold hits a record ", "", "something new"]
    alone = {"seed": None, "scores": [], "rows": {"row_index": [0, 1, 2, 3], "duplicate_group": [-1] * 4}}
    parts = [alone] + [{"seed": seed, "scores": [], "rows": {
        "row_index": [0, 1, 2, 3], "nearest_real_distance": [0.0] * 4,
        "copies_real": [seed == 1, False, False, False]}} for seed in (1, 2)]
    _, rows = assemble("c", parts, [1, 2], texts)
    by_seed = {s: rows.filter(pl.col("seed") == s).sort("row_index") for s in (1, 2)}
    assert by_seed[1]["copies_real"].to_list() == [True, False, False, False]
    assert by_seed[2]["copies_real"].to_list() == [False] * 4
    assert by_seed[1]["text_chars"].to_list() == [16, 18, 0, 13]
    assert rows["copies_eval"].null_count() == rows.height  # unknown, not clean
    assert rows.schema["copies_real"] == pl.Boolean and rows.schema["copies_eval"] == pl.Boolean


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


# Headlines of one domain, written for these tests: the reference (U_r), and distinct rows of the
# same domain that are not copies of any of them (other fills of the same templates among them).
HEADLINES = [
    "Blackbaud EPS beats by $0.01, beats on revenue",
    "Oil prices slide as OPEC signals higher output next quarter",
    "Federal Reserve holds rates steady and hints at cuts later this year",
    "Tesla shares jump after record quarterly deliveries beat estimates",
    "European stocks close lower as bank shares weigh on the index",
    "Gold hits a two-month high as the dollar weakens against the yen",
    "Amazon to open three new fulfilment centres in Texas",
    "Apple supplier warns of weaker iPhone demand in China",
    "Boeing wins a large order for wide-body jets from a Gulf carrier",
    "US jobless claims fall to their lowest level since March",
    "Netflix subscriber growth slows as competition in streaming heats up",
    "Copper climbs on hopes of stronger Chinese factory activity",
    "Microsoft price target raised to $420 at Morgan Stanley",
    "Japanese yen weakens past 150 per dollar for the first time in months",
    "Pfizer cuts its full-year sales forecast on lower vaccine demand",
    "Walmart raises annual profit outlook as shoppers seek bargains",
    "Bitcoin tumbles below $30,000 after a wave of liquidations",
    "UK inflation eases more than expected in September",
    "Nvidia market value tops one trillion dollars on AI chip demand",
    "Shell to sell its onshore Nigerian oil business for $2.4 billion",
    "Treasury yields rise as investors bet on a longer pause from the Fed",
    "Ford recalls 100,000 pickup trucks over a faulty seat belt sensor",
    "Chinese property developer misses a bond payment, shares halted",
    "Airline stocks rally as summer travel bookings hit a record",
]
SAME_DOMAIN = [
    "Euroseas EPS beats by $0.02, beats on revenue",
    "Crude oil rises as Middle East tensions threaten supply",
    "Fed officials split over whether to raise rates again",
    "Tesla cuts prices of its Model Y in Europe",
    "Asian shares mixed as traders await US inflation data",
    "Silver slips as Treasury yields climb to a new high",
    "Alphabet price target raised to $160 at Morgan Stanley",
    "Moderna shares fall after a late-stage trial disappoints",
    "Target lowers its outlook as shoppers cut back on discretionary items",
    "Ether falls 8% as crypto markets extend losses",
    "Eurozone inflation holds at 2.9% in October",
    "Ford to invest $3.5 billion in a new battery plant in Michigan",
]


def test_one_word_changed_headlines_are_copies_and_other_headlines_of_the_domain_are_not(bundled_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(bundled_model_path, device="cpu")
    ref = reference(HEADLINES, model.encode(HEADLINES))
    rng = np.random.default_rng(5)
    vocabulary = sorted({w for t in HEADLINES + SAME_DOMAIN for w in t.split()})
    edited = []
    for text in HEADLINES:
        for kind in ("replace", "delete", "insert"):
            words = text.split()
            at = int(rng.integers(len(words)))
            if kind == "replace":
                words[at] = next(w for w in rng.permutation(vocabulary) if w != words[at])
            elif kind == "delete":
                del words[at]
            else:
                words.insert(at, str(rng.choice(vocabulary)))
            edited.append(" ".join(words))
    exact = [t.upper() for t in HEADLINES[::2]] + ["  " + t.replace(" ", "  ") for t in HEADLINES[1::2]]
    texts = edited + exact + SAME_DOMAIN
    vectors = model.encode(texts)
    found = copies(texts, vectors, ref)
    n = len(edited)
    assert found[n:n + len(exact)].all()
    assert found[:n].mean() >= 0.8, [t for t, f in zip(edited, found, strict=True) if not f]
    assert not found[n + len(exact):].any(), [t for t, f in zip(SAME_DOMAIN, found[n + len(exact):], strict=True) if f]
    # The cosine alone (the rule before this one) leaves most edited copies out.
    old = exact_copies(edited, ref.texts) | near_copies(vectors[:n], model.encode(HEADLINES))
    assert old.mean() < found[:n].mean()


@pytest.mark.ray
def test_a_candidate_that_is_30_percent_u_r_is_flagged_within_5_points_and_its_eval_copies_found(ray_session,
                                                                                                  tmp_path):
    import synque_ray
    from synque_ray.demo import candidate_rows, write_demo_data

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
    # The evaluation set: 8 of the copier's own LLM-written rows (one re-cased), among rows of its own.
    leaked = [t for t, copy in zip(texts, is_copy, strict=True) if not copy][:8]
    evaluation = [leaked[0].upper(), *leaked[1:]] + candidate_rows(0.0, 12, np.random.default_rng(99))
    (tmp_path / "test.json").write_text(json.dumps([{"question": t} for t in evaluation]))
    config = {
        "name": "copies", "output": str(tmp_path / "out"),
        "real": {"path": str(tmp_path / "real" / "pool.jsonl"), "text": "text", "sample_size": 80, "seeds": [1, 2]},
        "candidates": {"path": str(tmp_path / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 64}, "proxies": ["mdm", "mmd"],
        "resources": {"embed_actors": 1}, "contamination": {"path": str(tmp_path / "test.json"), "text": "question"},
    }
    run = synque_ray.score(config)
    rows = run.row_scores
    assert rows is not None and rows.equals(pl.read_parquet(tmp_path / "out" / "row_scores.parquet"))
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
    is_leak = pl.Series([t in leaked for t in texts] * 2)  # per seed, by row_index
    leaks = copier.sort("seed", "row_index").filter(is_leak)
    assert leaks.height == 16 and leaks["copies_eval"].all()  # both seeds
    found = run.rankings.filter(pl.col("dataset_id") == "copier").row(0, named=True)
    assert found["eval_copy_share"] >= 0.08 and "eval_copy_share" in found["flags"]
    # Another evaluation set: the copier's results are not reused from the one before.
    others = ["What is the boiling point of water at sea level?", "Name the largest planet of the solar system.",
              "Who wrote the novel Moby-Dick?", "How many sides does a hexagon have?"]
    (tmp_path / "test.json").write_text(json.dumps([{"question": t} for t in others]))
    rows = synque_ray.score(config).row_scores
    assert rows is not None
    assert not rows.filter(pl.col("dataset_id") == "copier").sort("seed", "row_index").filter(is_leak)[
        "copies_eval"].any()


# ---------------------------------------------------------------- the contamination (evaluation) set


def _job(tmp_path, **extra) -> dict:
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"text": f"real row {i}"}) + "\n" for i in range(12)))
    (tmp_path / "candidates").mkdir(exist_ok=True)
    (tmp_path / "candidates" / "a.jsonl").write_text(json.dumps({"text": "a row"}) + "\n")
    return {"name": "t", "output": str(tmp_path / "out"), "proxies": ["mdm"],
            "real": {"path": str(tmp_path / "pool.jsonl"), "text": "text", "sample_size": 5},
            "candidates": {"path": str(tmp_path / "candidates"), "text": "text"}, **extra}


@pytest.mark.parametrize(("contamination", "message"), [
    ({"path": "test.json"}, "config: missing key 'contamination.text'"),
    ({"text": "question"}, "config: missing key 'contamination.path'"),
    ({"path": "test.json", "text": "question", "paht": "x"}, "config: unknown key 'contamination.paht' "
                                                             "(did you mean 'path'?)"),
    ({"path": "test.json", "text": "{question"}, "config: contamination.text: "),
    ("test.json", "config: contamination: Input should be a valid dictionary or instance of ContaminationConfig"),
])
def test_a_malformed_contamination_section_is_refused_in_one_line(tmp_path, contamination, message):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError

    with pytest.raises(UserError) as raised:
        parse_config(_job(tmp_path, contamination=contamination))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_the_contamination_set_is_read_as_real_is_and_bad_files_are_refused_before_any_work(tmp_path):
    from synque_ray.config import parse_config
    from synque_ray.errors import UserError
    from synque_ray.pipeline import read_contamination, run_job

    assert read_contamination(parse_config(_job(tmp_path))) is None
    test_set = tmp_path / "test.json"
    test_set.write_text(json.dumps([{"question": "What is 2 + 2?", "answer": "4"}, {"question": "Name a gas."}]))
    config = parse_config(_job(tmp_path, contamination={"path": str(test_set), "text": "question"}))
    evaluation = read_contamination(config)
    assert evaluation is not None and evaluation.texts == ["What is 2 + 2?", "Name a gas."]
    cases = [("missing.json", "question", "{}: file not found"),
             ("test.json", "answer", "{}: row 2 has no field 'answer' (its fields: 'question')"),
             ("empty.jsonl", "question", "{}: file is empty")]
    (tmp_path / "empty.jsonl").write_text("")
    for name, text, message in cases:
        config = parse_config(_job(tmp_path, contamination={"path": str(tmp_path / name), "text": text}))
        with pytest.raises(UserError) as raised:
            run_job(config)
        assert str(raised.value) == message.format(tmp_path / name)
        assert not (tmp_path / "out").exists()  # refused before anything is written
