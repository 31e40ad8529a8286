"""Copies of U_r rows with a word changed: found by `copies_real` before and after the lexical rule.

    PYTHONPATH=$PWD python benchmarks/bench_copies.py [--bench /work/shared/bench/sentiment]

On the sentiment benchmark's real headlines: U_r is one pre-drawn real sample; the copies are
its rows with one word replaced by another word of the pool's vocabulary, one word deleted
or one inserted, and exact copies (re-cased or re-spaced); the clean rows are LLM-written
headlines of the same domain (the synthetic candidates) and the real pool's rows outside U_r
(distinct real rows, the hardest clean rows). All are embedded with the bundled MiniLM on the
engine's CPU backend (fp32 ONNX). Two splits, each its own U_r, clean candidates and edit
seed, so that a figure that holds on one only shows. "before" is the rule the engine had
(exact text, or cosine >= 0.95); "after" is `rowsignals.copies`. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import time
from pathlib import Path

import numpy as np

from synque_ray.models import resolve_model
from synque_ray.onnx_embed import OnnxEncoder
from synque_ray.reading import content_hash
from synque_ray.rowsignals import copies, exact_copies, near_copies, real_text_set, reference

SPLITS = [  # (U_r sample, which synthetic files give the clean rows, edit seed)
    ("sample_seed42.json", 0, 0),
    ("sample_seed43.json", 1, 1),
]
CLEAN_PER_FILE = 125  # rows of each of 16 candidate files: 2,000 clean LLM rows per split


def headlines(path: Path) -> list[str]:
    return [row["headline"] for row in json.loads(path.read_text())]


def one_word_changed(text: str, kind: str, vocabulary: list[str], rng: random.Random) -> str:
    """`text` with one whitespace word replaced by another word of `vocabulary`, deleted, or
    one inserted at a random place."""
    words = text.split()
    at = rng.randrange(len(words))
    if kind == "replace":
        words[at] = rng.choice([w for w in rng.sample(vocabulary, 5) if w != words[at]])
    elif kind == "delete" and len(words) > 1:
        del words[at]
    else:
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
    return " ".join(words)


def exact_variant(text: str, rng: random.Random) -> str:
    return rng.choice([text.upper(), "  " + text.replace(" ", "   ") + " ", text.lower()])


def split_rows(bench: Path, sample: str, parity: int, seed: int) -> dict[str, list[str]]:
    pool = headlines(bench / "real" / "pool.json")
    u_r = headlines(bench / "real" / sample)
    rng = random.Random(seed)
    vocabulary = sorted({w for t in pool for w in t.split()})
    files = sorted(glob.glob(str(bench / "synthetic" / "*.json")))[parity::2]
    rows = {"u_r": u_r, **{kind: [one_word_changed(t, kind, vocabulary, rng) for t in u_r]
                           for kind in ("replace", "delete", "insert")},
            "exact": [exact_variant(t, rng) for t in u_r],
            "clean LLM rows": [t for f in files for t in headlines(Path(f))[:CLEAN_PER_FILE]],
            "distinct real rows": [t for t in dict.fromkeys(pool) if t not in set(u_r)]}
    return rows


def measure(rows: dict[str, list[str]], vectors: dict[str, np.ndarray]) -> dict:
    started = time.perf_counter()
    ref = reference(rows["u_r"], vectors["u_r"])
    calibrate_s = time.perf_counter() - started
    real = real_text_set(rows["u_r"])
    out: dict = {"cosine": ref.cosine, "run": ref.run, "calibrate_s": calibrate_s, "groups": {}}
    for group, texts in rows.items():
        if group == "u_r":
            continue
        t0 = time.perf_counter()
        before = exact_copies(texts, real) | near_copies(vectors[group], vectors["u_r"])
        t1 = time.perf_counter()
        after = copies(texts, vectors[group], ref)
        t2 = time.perf_counter()
        out["groups"][group] = {"rows": len(texts), "before": float(before.mean()), "after": float(after.mean()),
                                "before_s": t1 - t0, "after_s": t2 - t1,
                                "after_marked": [t for t, m in zip(texts, after, strict=True) if m][:5]}
    edited = [g for g in ("replace", "delete", "insert")]
    for when in ("before", "after"):
        out[f"one_word_{when}"] = float(np.mean([out["groups"][g][when] for g in edited]))
    # The mix: 30 U_r rows with one word replaced among 70 LLM rows; the share it reads.
    rng = np.random.default_rng(0)
    reads = {"before": [], "after": []}
    for _ in range(20):
        picks = rng.choice(len(rows["replace"]), 30, replace=False)
        clean = rng.choice(len(rows["clean LLM rows"]), 70, replace=False)
        texts = [rows["replace"][i] for i in picks] + [rows["clean LLM rows"][i] for i in clean]
        mixed = np.vstack([vectors["replace"][picks], vectors["clean LLM rows"][clean]])
        reads["before"].append((exact_copies(texts, real) | near_copies(mixed, vectors["u_r"])).mean())
        reads["after"].append(copies(texts, mixed, ref).mean())
    out["mix_share"] = {k: float(np.mean(v)) for k, v in reads.items()}
    return out


def embedded(encoder: OnnxEncoder, texts: list[str], cache: str | None) -> np.ndarray:
    """The rows' embeddings, kept under `cache` by their content hash when a cache is given."""
    if cache is None:
        return encoder.encode(texts, 64)
    path = Path(cache, content_hash(texts) + ".npy")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, encoder.encode(texts, 64))
    return np.load(path)


def cost_and_test_set(bench: Path, encoder: OnnxEncoder, cache: str | None) -> None:
    """The cost on 10,000 rows (the clean rows of both splits, five times over) against a U_r
    sample and against the real test set as a contamination set, and how many clean LLM rows
    of each candidate file copy a test-set row."""
    test_set = headlines(bench / "real" / "test_set.json")
    u_r = headlines(bench / "real" / "sample_seed42.json")
    clean = {parity: split_rows(bench, sample, parity, seed)["clean LLM rows"] for sample, parity, seed in SPLITS}
    rows = (clean[0] + clean[1]) * 2 + clean[0]
    vectors = np.vstack([embedded(encoder, clean[0], cache), embedded(encoder, clean[1], cache)] * 2
                        + [embedded(encoder, clean[0], cache)])
    for name, ref_texts in (("U_r (198 rows)", u_r), (f"test set ({len(test_set)} rows)", test_set)):
        ref_vectors = embedded(encoder, ref_texts, cache)
        t0 = time.perf_counter()
        ref = reference(ref_texts, ref_vectors)
        t1 = time.perf_counter()
        found = copies(rows, vectors, ref)
        t2 = time.perf_counter()
        old = exact_copies(rows, real_text_set(ref_texts)) | near_copies(vectors, ref_vectors)
        t3 = time.perf_counter()
        print(f"{len(rows)} rows against {name}: calibration {t1 - t0:.2f} s (cosine {ref.cosine:.3f}, run "
              f"{ref.run}), copies {t2 - t1:.2f} s, the old rule {t3 - t2:.2f} s; marked {found.mean():.2%} "
              f"(old {old.mean():.2%})")
    ref = reference(test_set, embedded(encoder, test_set, cache))
    # The larger the reference, the closer its rows' nearest neighbours, the higher rule 3's cosine:
    # recall on one-word-changed copies of every 8th test-set row, against the whole test set.
    rng = random.Random(2)
    vocabulary = sorted({w for t in test_set for w in t.split()})
    for kind in ("replace", "delete", "insert"):
        edited = [one_word_changed(t, kind, vocabulary, rng) for t in test_set[::8]]
        found = copies(edited, embedded(encoder, edited, cache), ref)
        print(f"one word changed ({kind}) in {len(edited)} test-set rows: {found.mean():.1%} found against the "
              f"test set (cosine {ref.cosine:.3f})")
    files = sorted(glob.glob(str(bench / "synthetic" / "*.json")))
    for parity in (0, 1):
        marks = copies(clean[parity], embedded(encoder, clean[parity], cache), ref)
        for k, f in enumerate(files[parity::2]):
            share = marks[k * CLEAN_PER_FILE:(k + 1) * CLEAN_PER_FILE]
            if share.any():
                marked = [t for t, m in zip(clean[parity][k * CLEAN_PER_FILE:], share, strict=False) if m]
                print(f"copies of the test set: {Path(f).stem}: {int(share.sum())} of {CLEAN_PER_FILE}: "
                      + " | ".join(marked)[:300])
    print(f"copies of the test set among all {sum(map(len, clean.values()))} clean LLM rows: see the lines above")


def demo_shares(encoder: OnnxEncoder, cache: str | None) -> None:
    """The demo's data (`synque demo`: 12 candidates of 300 rows from one small grammar, U_r of 150
    rows per seed 1 and 2): the share of each candidate's rows marked as copies of U_r."""
    import tempfile

    from synque_ray.demo import write_demo_data
    from synque_ray.reading import read_texts, sample_pool

    with tempfile.TemporaryDirectory() as folder:
        write_demo_data(folder)
        pool = read_texts(Path(folder, "real", "pool.jsonl"), "text")
        candidates = {p.stem: read_texts(p, "text") for p in sorted(Path(folder, "candidates").glob("*.jsonl"))}
    for seed in (1, 2):
        u_r = sample_pool(pool, 150, seed, "pool")
        u_r_vectors = embedded(encoder, u_r, cache)
        ref = reference(u_r, u_r_vectors)
        line = []
        for name, texts in candidates.items():
            vectors = embedded(encoder, texts, cache)
            old = exact_copies(texts, ref.texts) | near_copies(vectors, u_r_vectors)
            line.append(f"{name.split('_')[1]} {old.mean():.1%}→{copies(texts, vectors, ref).mean():.1%} "
                        f"(exact {exact_copies(texts, ref.texts).mean():.1%})")
        print(f"demo, seed {seed} (cosine {ref.cosine:.3f}, run {ref.run}): before→after: " + "; ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="/work/shared/bench/sentiment")
    parser.add_argument("--cache", help="a folder to keep the embeddings in between runs (default: none)")
    parser.add_argument("--demo", action="store_true", help="measure on the demo's data instead")
    args = parser.parse_args()
    encoder = OnnxEncoder(resolve_model("bundled-minilm", "embedding.model")[0], 1, quantize=False)
    if args.demo:
        demo_shares(encoder, args.cache)
        return
    results = []
    for sample, parity, seed in SPLITS:
        rows = split_rows(Path(args.bench), sample, parity, seed)
        started = time.perf_counter()
        vectors = {group: embedded(encoder, texts, args.cache) for group, texts in rows.items()}
        embed_s = time.perf_counter() - started
        result = measure(rows, vectors)
        result.update(split=f"U_r {sample}, {'even' if parity == 0 else 'odd'} candidate files, edit seed {seed}",
                      embed_s=embed_s)
        results.append(result)
        print(json.dumps(result, indent=1, ensure_ascii=False), flush=True)
    print("\n| split | group | rows | found before | found after |\n|---|---|---|---|---|")
    for result in results:
        for group, g in result["groups"].items():
            print(f"| {result['split']} | {group} | {g['rows']} | {g['before']:.1%} | {g['after']:.1%} |")
        print(f"| {result['split']} | one word changed (mean) | {3 * len(result['groups']['replace']) and 594} | "
              f"{result['one_word_before']:.1%} | {result['one_word_after']:.1%} |")
        print(f"| {result['split']} | mix 30 replaced + 70 LLM: share read (truth 30%) | 100 x 20 draws | "
              f"{result['mix_share']['before']:.1%} | {result['mix_share']['after']:.1%} |")
    cost_and_test_set(Path(args.bench), encoder, args.cache)
    for result in results:
        llm = result["groups"]["clean LLM rows"]
        print(f"\n{result['split']}: calibrated cosine {result['cosine']:.3f}, run {result['run']} words; "
              f"calibration {result['calibrate_s'] * 1e3:.0f} ms; {llm['rows']} clean rows: before "
              f"{llm['before_s'] * 1e3:.0f} ms, after {llm['after_s'] * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
