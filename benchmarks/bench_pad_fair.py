"""PAD fair to size: the first fair PAD beside balanced probabilities, both classifiers, and (parts
`text`, `text-ranking`) the classifier alone beside the support gate, on real headlines.

    python benchmarks/bench_pad_fair.py CONFIG PERFORMANCE_CSV ID_COLUMN METRIC [--seeds N]
        [--part simulation|benchmark] [--variant I ...]
    python benchmarks/bench_pad_fair.py --part text [--data DIR] [--generator NAME ...] [--before PAD_PY] [--draws 8]
    python benchmarks/bench_pad_fair.py --part text-ranking [--data DIR] [--before PAD_PY]

Two parts, every variant on the same inputs, one after another in this process
(single-threaded classifiers), cost in CPU seconds (process time):

1. simulation, truth by construction: 16-d Gaussians, U_r = 30 rows, a candidate
   shifted 2 sd in one coordinate at 30/100/300/1000 rows (mean of 5 U_r draws; a
   size-fair PAD reads the same at every size), and A = 60 rows shifted 1.5 sd vs
   B = 1,000 rows shifted 2.5 sd (B is further: its PAD must be higher), and the
   median p_synthetic of one distribution at 200 v 200, 1000 v 200 and 1000 v 30 rows
   (a balanced probability reads ½ at every size);
2. the benchmark of CONFIG (embeddings read from its cache: run `synque score CONFIG`
   first): Spearman/Pearson of −PAD with the measured metric averaged over seeds, and
   the median over (candidate, seed) of the candidate rows' median `p_synthetic`.

3. text (no config needed): real headlines and LLM-written candidates of DIR (default
   /work/shared/bench/sentiment), embedded with the bundled MiniLM (cached under /tmp). Per
   generator, `--draws` (8) draws of disjoint 30 / 100 / 300-row subsamples of its rows against 4 U_r
   samples of 100 pool rows: PAD at each size (mean over seeds and draws, sd over draws of
   the seed means); p_best of each size through `reduce.rank` (one distribution at three
   sizes: a true tie, so about 1/3 each; the new definition's replicates); the 300-row
   subsample against 27 other rows of the same generator plus 3 off-topic rows in each
   (draw, seed) pair, for three kinds of off-topic rows (first lines of Python standard-library
   module docstrings, sentences of the licences in /usr/share/common-licenses, sentences of
   this project's docs/); and CPU seconds per PAD without replicates (process time, single
   threaded), the two definitions called one after the other on the same inputs. "before":
   the classifier alone (`support_gate: false`), or with `--before PAD_PY` the default of another
   version of synque_ray/proxies/pad.py (e.g. `git show REV:synque_ray/proxies/pad.py > PAD_PY`),
   imported beside this one; "after": this tree's default, rows outside U_r's support read as
   synthetic. Both train every model on the run's `auto` size per side.

4. text-ranking: every candidate of DIR (about 1,000 rows each) against its pre-drawn U_r
   samples: Spearman/Pearson of −PAD with the measured test F1, before and after (as in
   `text`), and CPU seconds per PAD. The candidates are equal in size, so this is what the support gate costs
   or gains in power on candidates that are all on topic.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
from bench_pad import benchmark_parser, embeddings, quality

from synque_ray.config import load_config
from synque_ray.evaluate import read_performance
from synque_ray.proxies.pad import PROXY, PadParams, pad_from_probabilities, pad_probabilities

VARIANTS = {  # name: (classifier, balanced probabilities); the error is class-balanced in all
    "first fair default: xgboost, raw probabilities": ("xgboost", False),
    "xgboost, balanced probabilities": ("xgboost", True),
    "logistic, raw probabilities": ("logistic", False),
    "**logistic, balanced probabilities (new default)**": ("logistic", True),
}


def pad_and_rows(variant, synthetic, real, seed) -> tuple[float, np.ndarray]:
    """(PAD with the class-balanced error, the candidate rows' probabilities) under one variant."""
    classifier, balanced = variant
    probability, labels = pad_probabilities(synthetic, real, classifier, folds=5, seed=seed, balanced=balanced)
    return pad_from_probabilities(probability, labels, balanced=True), probability[: len(synthetic)]


def _gaussian(rng, rows: int, shift: float, dims: int = 16) -> np.ndarray:
    values = rng.normal(size=(rows, dims))
    values[:, 0] += shift
    return values


def simulation(variant) -> tuple[list[float], float, float, list[float], float]:
    """(mean PAD at 30/100/300/1000 candidate rows, PAD of A, PAD of B, median p_synthetic of
    one distribution at 200 v 200, 1000 v 200 and 1000 v 30 rows, CPU seconds)."""
    def mean_pad(rows, shift, offset=0):
        values = []
        for draw in range(5):
            candidate = _gaussian(np.random.default_rng(1000 + offset + rows + draw), rows, shift)
            values.append(pad_and_rows(variant, candidate, _gaussian(np.random.default_rng(draw), 30, 0.0), draw)[0])
        return float(np.mean(values))

    def median_p(rows, real_rows):  # one distribution: a size-fair p_synthetic has median ½
        return float(np.mean([np.median(pad_and_rows(variant, _gaussian(np.random.default_rng(9 + d), rows, 0.0),
                                                     _gaussian(np.random.default_rng(d), real_rows, 0.0), d)[1])
                              for d in range(3)]))

    started = time.process_time()
    by_size = [mean_pad(rows, 2.0) for rows in (30, 100, 300, 1000)]
    a, b = mean_pad(60, 1.5, offset=50), mean_pad(1000, 2.5, offset=80)
    medians = [median_p(rows, real_rows) for rows, real_rows in ((200, 200), (1000, 200), (1000, 30))]
    return by_size, a, b, medians, time.process_time() - started


def benchmark(variant, real, candidates, performance) -> tuple[float, tuple, float]:
    """(CPU seconds per pair, (Spearman, its std over seeds, Pearson), median p_synthetic)."""
    rows, medians, started = [], [], time.process_time()
    for seed, real_vectors in real.items():
        for name, vectors in candidates.items():
            value, p_synthetic = pad_and_rows(variant, vectors, real_vectors, seed)
            rows.append({"dataset_id": name, "seed": seed, "score": -value})
            medians.append(float(np.median(p_synthetic)))
    seconds = (time.process_time() - started) / len(rows)
    return seconds, quality(pl.DataFrame(rows), performance), float(np.median(medians))


TEXT_SIZES, TEXT_REAL_ROWS, TEXT_DRAWS, TEXT_SEEDS, OFF_TOPIC_ROWS = (30, 100, 300), 100, 8, 4, 3
TEXT_GENERATORS = ["llama3.3-70b_few-shot_v1", "qwen2.5-7b_zero-shot_v1"]


def off_topic_texts() -> list[str]:
    """First lines of the standard library's module docstrings: real English, off the headlines' topic."""
    import importlib
    import sys

    lines = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in ("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"):
            continue
        try:
            doc = importlib.import_module(name).__doc__ or ""
        except Exception:  # noqa: BLE001 - a module that does not import here is simply left out
            continue
        first = doc.strip().split("\n")[0].strip()
        if len(first.split()) >= 4:
            lines.append(first)
    return sorted(set(lines))


def _sentences(text: str) -> list[str]:
    """The sentences of a text of 6 to 30 words (Markdown code, headings and tables left out)."""
    import re

    text = re.sub(r"`[^`]*`", "", text)
    text = " ".join(line for line in text.splitlines() if not line.startswith(("#", "|", "    ", "```")))
    return [s.strip() for s in re.split(r"(?<=[.;])\s+", re.sub(r"\s+", " ", text)) if 6 <= len(s.split()) <= 30]


def licence_sentences() -> list[str]:
    """Sentences of the licences Debian ships (/usr/share/common-licenses): legal English, another register."""
    from pathlib import Path

    found = []
    for name in ("Apache-2.0", "GPL-3", "LGPL-3", "MPL-2.0", "GFDL-1.3"):
        path = Path("/usr/share/common-licenses", name)
        if path.exists():
            found += [s for s in _sentences(path.read_text()) if not s.isupper()]
    return sorted(set(found))[:300]


# The docs-prose pool is this project's docs/ at one revision: read from the working tree it moved with
# every edit of the docs (215 and 219 sentences in two runs of one session), and the cell with it.
DOCS_REVISION = "05d06f8"


def docs_sentences() -> list[str]:
    """Sentences of this project's docs/ at `DOCS_REVISION` (technical prose about ranking datasets): another
    domain."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout

    paths = [p for p in git("ls-tree", "--name-only", DOCS_REVISION, "docs/").split() if p.endswith(".md")]
    return sorted({s for path in sorted(paths) for s in _sentences(git("show", f"{DOCS_REVISION}:{path}"))})[:300]


OFF_TOPIC = {"docstrings": off_topic_texts, "licences": licence_sentences, "docs prose": docs_sentences}


def _embedded(texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """{name: embeddings} of the texts, with the bundled MiniLM on one thread, cached in /tmp by content."""
    import hashlib
    import json
    from pathlib import Path

    from synque_ray.models import resolve_model

    path, model_id = resolve_model("bundled-minilm", "embedding.model")
    digest = hashlib.sha256(json.dumps([model_id, texts], sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(f"/tmp/bench_pad_fair_text_{digest}.npz")
    if not cache.exists():
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        model = SentenceTransformer(path, device="cpu")
        np.savez(cache, **{key: model.encode(rows, batch_size=64) for key, rows in texts.items()})
    return dict(np.load(cache))


def text_embeddings(data: str, generators: list[str], real: tuple[str, ...] = ("pool",)) -> dict[str, np.ndarray]:
    """{name: embeddings} of DIR's real files `real` (stems under real/), the generators' rows and the
    docstrings (`off_topic`), embedded with the bundled MiniLM on one thread, cached in /tmp."""
    import json
    from pathlib import Path

    texts = {name: [r["headline"] for r in json.loads(Path(data, "real", f"{name}.json").read_text())]
             for name in real}
    texts["off_topic"] = off_topic_texts()
    for name in generators:
        texts[name] = [r["headline"] for r in json.loads(Path(data, "synthetic", f"{name}.json").read_text())]
    return _embedded(texts)


def definitions(candidate_rows: list[int], real_rows: list[int], before: str | None) -> dict:
    """{label: (the PAD proxy, its parameters resolved for a run of these candidate and U_r sizes, as the
    pipeline resolves them)}: before, then this tree's default. before None: this tree's classifier
    alone; else the PAD module at that path (another version of pad.py, run against this tree's other
    modules), at its own defaults and its own `train_rows: auto`."""
    if before is None:
        return {"before (classifier alone)": (PROXY, PadParams(support_gate=False).for_run(candidate_rows, real_rows)),
                "after (support gate)": (PROXY, PadParams().for_run(candidate_rows, real_rows))}
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("pad_before", before)
    assert spec is not None and spec.loader is not None, before
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the parameters' annotations through it
    spec.loader.exec_module(module)
    return {f"before ({before})": (module.PROXY, module.PadParams().for_run(candidate_rows, real_rows)),
            "after (this tree)": (PROXY, PadParams().for_run(candidate_rows, real_rows))}


def _per_side(compared: dict) -> str:
    """The rows per side each definition's models are fit on, for the table's heading."""
    return ", ".join(f"{label}: {params.train_rows}" for label, (_, params) in compared.items())


def text_ranking(data: str, before: str | None = None) -> None:
    """Spearman of −PAD with test F1 over DIR's candidates (all about 1,000 rows, so size plays no part:
    what the smaller training size costs in power), U_r = the pre-drawn real samples."""
    from pathlib import Path

    generators = sorted(p.stem for p in Path(data, "synthetic").glob("*.json"))
    samples = tuple(sorted(p.stem for p in Path(data, "real").glob("sample_seed*.json")))
    vectors = text_embeddings(data, generators, samples)
    performance = read_performance(str(Path(data, "task_performance.csv")), "dataset_name", "test_f1")
    compared = definitions([len(vectors[name]) for name in generators], [len(vectors[s]) for s in samples], before)
    print(f"\n{len(generators)} candidates x {len(samples)} U_r samples; rows per side: {_per_side(compared)}\n")
    print("| PAD | CPU s per PAD | Spearman | ± over seeds | Pearson |")
    print("|---|---|---|---|---|")
    for label, (proxy, params) in compared.items():
        rows, started = [], time.process_time()
        for seed, sample in enumerate(samples):
            for name in generators:
                value = proxy.compute(vectors[name], vectors[sample], params, seed, 0).value
                rows.append({"dataset_id": name, "seed": seed, "score": -value})
        seconds = (time.process_time() - started) / len(rows)
        rho, rho_std, r = quality(pl.DataFrame(rows), performance)
        print(f"| {label} | {seconds:.3f} | {rho:.3f} | {rho_std:.3f} | {r:.3f} |", flush=True)


def text_part(data: str, generators: list[str], before: str | None = None, draws: int = TEXT_DRAWS) -> None:
    from synque_ray.reduce import rank

    vectors = text_embeddings(data, generators)
    pool, candidates = vectors["pool"], {name: vectors[name] for name in generators}
    off_topic = _embedded({kind: texts() for kind, texts in OFF_TOPIC.items()})
    compared = definitions([*TEXT_SIZES, TEXT_SIZES[0]], [TEXT_REAL_ROWS], before)
    after = list(compared)[-1]
    print(f"\ntext: U_r {TEXT_REAL_ROWS} pool rows x {TEXT_SEEDS} seeds; {draws} draws per generator; "
          f"rows per side: {_per_side(compared)}; off-topic pools: "
          + ", ".join(f"{kind} {len(rows)}" for kind, rows in off_topic.items()) + "\n")
    print("| generator | PAD | at 30 / 100 / 300 rows (sd over draws) | spread | p_best 30 / 100 / 300 | "
          + " | ".join(f"clean 300 ahead of 30 with 10% {kind}: pairs, mean gap (noisy − clean)" for kind in OFF_TOPIC)
          + " | CPU s per PAD at 30 / 100 / 300 |")
    print("|---|---|---|---|---|" + "---|" * len(OFF_TOPIC) + "---|")
    for name, rows in candidates.items():
        value: dict = {d: {} for d in compared}  # definition -> (size or kind, draw, seed) -> output
        seconds: dict = {d: {n: [] for n in TEXT_SIZES} for d in compared}
        for draw in range(draws):
            order = np.random.default_rng([draw, 1]).permutation(len(rows))
            picked, start = {}, 0
            for n in TEXT_SIZES:
                picked[n] = rows[order[start:start + n]]
                start += n
            for kind, pool_rows in off_topic.items():
                extra = np.random.default_rng([draw, 2]).choice(len(pool_rows), OFF_TOPIC_ROWS, replace=False)
                picked[kind] = np.vstack([rows[order[start:start + TEXT_SIZES[0] - OFF_TOPIC_ROWS]], pool_rows[extra]])
            for seed in range(TEXT_SEEDS):
                real = pool[np.random.default_rng([seed, 3]).choice(len(pool), TEXT_REAL_ROWS, replace=False)]
                for key, synthetic in picked.items():
                    for label, (proxy, params) in compared.items():  # one after the other, same inputs
                        started = time.process_time()
                        value[label][key, draw, seed] = proxy.compute(synthetic, real, params, seed, 0)
                        if key in seconds[label]:
                            seconds[label][key].append(time.process_time() - started)
                    if key in TEXT_SIZES:  # the tie's p_best needs replicates: the new definition's
                        value[after][key, draw, seed] = PROXY.compute(synthetic, real, compared[after][1], seed, 200)
        for label in compared:
            out = value[label]
            means = {n: [np.mean([out[n, d, s].value for s in range(TEXT_SEEDS)]) for d in range(draws)]
                     for n in TEXT_SIZES}
            sizes = " / ".join(f"{np.mean(m):.3f} ({np.std(m):.3f})" for m in means.values())
            spread = max(map(np.mean, means.values())) - min(map(np.mean, means.values()))
            p_best: dict = {n: [] for n in TEXT_SIZES}
            for d in range(draws if label == after else 0):  # one run per draw: the three sizes over the seeds
                scores = pl.DataFrame([{"dataset_id": f"n{n:04d}", "proxy": "pad", "seed": s,
                                        "raw": out[n, d, s].value, "score": -out[n, d, s].value,
                                        "replicates": list(-out[n, d, s].replicates)}
                                       for n in TEXT_SIZES for s in range(TEXT_SEEDS)])
                for row in rank(scores).iter_rows(named=True):
                    p_best[int(row["dataset_id"][1:])].append(row["p_best"])
            best = " / ".join(f"{np.mean(v):.2f}" for v in p_best.values()) if label == after else "—"
            cells = []
            for kind in OFF_TOPIC:
                gaps = [out[kind, d, s].value - out[TEXT_SIZES[-1], d, s].value
                        for d in range(draws) for s in range(TEXT_SEEDS)]
                cells.append(f"{sum(g > 0 for g in gaps)} of {len(gaps)}, {np.mean(gaps):+.3f}")
            cost = " / ".join(f"{np.mean(seconds[label][n]):.3f}" for n in TEXT_SIZES)
            print(f"| {name} | {label} | {sizes} | {spread:.3f} | {best} | " + " | ".join(cells) + f" | {cost} |",
                  flush=True)


def main() -> None:
    import sys

    if "--part" in sys.argv and sys.argv[sys.argv.index("--part") + 1:][:1] in (["text"], ["text-ranking"]):
        text = argparse.ArgumentParser()
        text.add_argument("--part")
        text.add_argument("--data", default="/work/shared/bench/sentiment")
        text.add_argument("--generator", action="append", help="candidate file stems (default: two generators)")
        text.add_argument("--before", help="another version of pad.py to compare with (default: the classifier alone)")
        text.add_argument("--draws", type=int, default=TEXT_DRAWS, help="text: draws of subsamples per generator")
        args = text.parse_args()
        if args.part == "text":
            text_part(args.data, args.generator or TEXT_GENERATORS, args.before, args.draws)
        else:
            text_ranking(args.data, args.before)
        return
    parser = benchmark_parser()
    parser.add_argument("--part", choices=["simulation", "benchmark"], help="run only this part (default: both)")
    parser.add_argument("--variant", type=int, action="append", help="run only these rows of VARIANTS (0-based)")
    args = parser.parse_args()
    names = list(VARIANTS)
    chosen = {names[i]: VARIANTS[names[i]] for i in args.variant} if args.variant else VARIANTS
    if args.part != "benchmark":
        print_simulation(chosen)
    if args.part != "simulation":
        print_benchmark(args, chosen)


def print_simulation(variants: dict) -> None:
    print("| PAD variant | PAD at 30 / 100 / 300 / 1000 rows | spread | A (60, 1.5 sd) | B (1000, 2.5 sd) "
          "| median p_synthetic, one distribution | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, variant in variants.items():
        by_size, a, b, medians, seconds = simulation(variant)
        sizes, p = " / ".join(f"{v:.2f}" for v in by_size), " / ".join(f"{v:.2f}" for v in medians)
        print(f"| {name} | {sizes} | {max(by_size) - min(by_size):.2f} | {a:.2f} | {b:.2f} | {p} | {seconds:.1f} |",
              flush=True)


def print_benchmark(args, variants: dict) -> None:
    real, candidates = embeddings(load_config(args.config), args.seeds)
    performance = read_performance(args.performance, args.id_column, args.metric)
    print(f"\n{len(candidates)} candidates x {len(real)} seeds\n")
    print("| PAD variant | CPU s per pair | Spearman | ± over seeds | Pearson | median p_synthetic |")
    print("|---|---|---|---|---|---|")
    for name, variant in variants.items():
        seconds, (rho, rho_std, r), median = benchmark(variant, real, candidates, performance)
        print(f"| {name} | {seconds:.3f} | {rho:.3f} | {rho_std:.3f} | {r:.3f} | {median:.2f} |", flush=True)


if __name__ == "__main__":
    main()
