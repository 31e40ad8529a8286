"""Reading everything a report shows from a run folder (any pyarrow filesystem).

Only run.json, scores.parquet and rankings.parquet are required. Everything else (row
scores, evaluation, LENS, history, embeddings, the candidate files) is optional: a
missing piece becomes None plus a note the page shows, never an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from synque_ray.embed import EmbeddingCache
from synque_ray.errors import UserError
from synque_ray.runfiles import (CandidateFile, candidate_paths, latest_stamp, published, read_candidate, run_info,
                                 run_table)
from synque_ray.storage import Store, WriteError
from synque_ray.vocabulary import (EVALUATION_FILE, LENS_JUDGEMENTS_FILE, RANKINGS_FILE, ROW_SCORES_FILE, RUN_FILE,
                                   SCORES_FILE)

HISTORY_RUNS = 8  # the latest runs a history table shows


@dataclass
class RunData:
    """The tables of one run's output set, with a note for each optional piece that is absent.

    location: the output folder (its cache, rubrics and history); folder: the set read."""

    location: str
    info: dict
    scores: pl.DataFrame
    rankings: pl.DataFrame
    row_scores: pl.DataFrame | None = None
    evaluation: dict | None = None
    judgements: pl.DataFrame | None = None
    history: list[tuple[str, pl.DataFrame]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is empty
    folder: str = ""


@dataclass
class CandidateInputs:
    """What one candidate's section needs beyond the tables; None where it could not be read."""

    file: CandidateFile | None
    embeddings: np.ndarray | None
    real_embeddings: np.ndarray | None
    rubrics: dict[int, dict]
    notes: list[str]


def load_run(location: str, stamp: str | None = None) -> RunData:
    """The tables of the output set `LATEST` names (or of `runs/<stamp>/`, or of the folder itself
    when it has no pointer); a UserError when it is not a finished run."""
    root = Store(location)
    store = published(root, stamp)
    run = RunData(root.display(), run_info(store), run_table(store, SCORES_FILE),
                  run_table(store, RANKINGS_FILE), folder=store.display())
    run.row_scores = run_table(store, ROW_SCORES_FILE, required=False)
    if run.row_scores is None:
        run.notes["rows"] = "row_scores.parquet is missing: no per-row signals for this run"
    evaluation = store.read_json(EVALUATION_FILE)
    run.evaluation = evaluation if isinstance(evaluation, dict) else None
    if run.evaluation is None:
        run.notes["evaluation"] = "no evaluation.json: run `synque evaluate` with measured performance to add it"
    run.judgements = run_table(store, LENS_JUDGEMENTS_FILE, required=False)
    if run.judgements is None:
        run.notes["judgements"] = "LENS did not run (no lens_judgements.parquet)"
    run.history = load_history(root, upto=stamp, now=candidate_hashes(run.info))  # a run not yet published counts
    if len(run.history) < 2:
        run.notes["history"] = f"{len(run.history)} run(s) under runs/: history needs at least two"
    return run


def candidate_hashes(info: dict) -> dict[str, str]:
    """{candidate id: content hash} as a run's run.json recorded them (empty for older runs)."""
    hashes = (info.get("content_hashes") or {}).get("candidates") or {}
    return {str(k): str(v) for k, v in hashes.items()} if isinstance(hashes, dict) else {}


def named_now(table: pl.DataFrame, then: dict[str, str], now: dict[str, str]) -> pl.DataFrame:
    """An earlier run's rankings with each candidate named as its file is named now: the candidate
    whose content hash (`then`: id -> hash in that run) is a current candidate's (`now`) takes the
    current name (a renamed file is one candidate); an id that still holds the same content, or
    whose content no current file holds, keeps its name. Where twins share the content, the
    first current name in order is taken unless the old one is among them."""
    by_hash: dict[str, list[str]] = {}
    for dataset_id, digest in sorted(now.items()):
        by_hash.setdefault(digest, []).append(dataset_id)
    renames = {}
    for old, digest in then.items():
        names = by_hash.get(digest, [])
        if names and old not in names:
            renames[old] = names[0]
    return table.with_columns(pl.col("dataset_id").replace(renames)) if renames else table


def load_history(store: Store, latest: int = HISTORY_RUNS, upto: str | None = None,
                 now: dict[str, str] | None = None) -> list[tuple[str, pl.DataFrame]]:
    """(stamp, rankings) of the latest runs under runs/ up to `upto` (the run whose report this is:
    written before its set is published, it belongs in its own history), by default up to the
    published one; oldest first. Unreadable sets are skipped, and so are newer ones (a run still
    writing, or killed). With `now` (the current candidates' content hashes), each earlier run's
    candidates are named as their files are named now (`named_now`)."""
    entries = store.listing("runs") or []
    newest = upto or latest_stamp(store)
    stamps = [name for name, is_folder in entries if is_folder and (newest is None or name <= newest)]
    found = []
    for stamp in stamps:
        table = run_table(store, f"runs/{stamp}/{RANKINGS_FILE}", required=False)
        if table is not None:
            if now:
                info = store.child(f"runs/{stamp}").read_json(RUN_FILE)
                then = candidate_hashes(info if isinstance(info, dict) else {})
                table = named_now(table, then, now)
            found.append((stamp, table))
    return found[-latest:]


def _cache(run: RunData) -> EmbeddingCache | None:
    config, model = run.info.get("config", {}), run.info.get("models", {}).get("embedding")
    if not model:
        return None
    location = config.get("cache_dir") or f"{run.location.rstrip('/')}/cache"
    return EmbeddingCache(Store(location), model)


def real_embeddings(run: RunData) -> tuple[np.ndarray | None, str | None]:
    """U_r's embeddings for the run's first seed, or None and why not."""
    cache = _cache(run)
    hashes = run.info.get("content_hashes", {}).get("real", {})
    if cache is None or not hashes:
        return None, "run.json names no embedding model or U_r hash"
    seed = sorted(hashes, key=int)[0]
    vectors = cache.load_hash(hashes[seed])
    return vectors, None if vectors is not None else f"U_r's embeddings are not in the cache ({cache.store.display()})"


def candidate_inputs(run: RunData, dataset_id: str, paths: dict, real: np.ndarray | None) -> CandidateInputs:
    """Read one candidate's file, embeddings and rubrics; each absent piece leaves a note."""
    notes: list[str] = []
    file = None
    if dataset_id in paths:
        try:
            file = read_candidate(run.info, dataset_id, paths[dataset_id])
        except UserError as err:
            notes.append(str(err))
    else:
        notes.append("its file is no longer among the run's candidates: rows are shown without their text")
    if file is not None and file.changed:
        notes.append(file.change_message().replace("; re-run `synque score` first", ": rows whose text changed "
                                                   "are shown without it"))
    cache, recorded = _cache(run), run.info.get("content_hashes", {}).get("candidates", {}).get(dataset_id)
    vectors = cache.load_hash(recorded) if cache is not None and recorded else None
    if vectors is None:
        notes.append("its embeddings are not in the embedding cache: no projection")
    store = Store(run.location)
    rubrics = {}
    for seed in run.info.get("config", {}).get("real", {}).get("seeds", []):
        rubric = store.read_json(f"rubrics/{dataset_id}/seed{seed}.json")
        if isinstance(rubric, dict):
            rubrics[int(seed)] = rubric
    return CandidateInputs(file, vectors, real, rubrics, notes)


def candidate_files(run: RunData) -> tuple[dict, str | None]:
    """Candidate id → file, or an empty mapping and why (the folder moved, say)."""
    try:
        return candidate_paths(run.info), None
    except UserError as err:
        return {}, f"candidate files not found ({err}): rows are shown without their text"


Projection = tuple[np.ndarray, np.ndarray, float]  # (candidate xy, U_r xy, explained share)


def projection(run: RunData, dataset_id: str, compute: Callable[[], Projection], method: str) -> Projection:
    """A candidate's projection beside U_r, reused from the embedding cache while both embeddings
    are unchanged (keyed by their content hashes and `method`, e.g. "pca400s0"); computed and
    saved otherwise. A cache that cannot be written only costs the reuse."""
    cache = _cache(run)
    hashes = run.info.get("content_hashes", {})
    candidate, real = hashes.get("candidates", {}).get(dataset_id), hashes.get("real", {})
    if cache is None or not candidate or not real:
        return compute()
    key = f"{cache.prefix}/projections/{method}-{candidate}-{real[sorted(real, key=int)[0]]}.npz"
    payload = cache.store.read_bytes(key)
    if payload is not None:
        try:
            with np.load(io.BytesIO(payload)) as saved:
                return saved["candidate"], saved["real"], float(saved["explained"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry is recomputed and replaced
    result = compute()
    buffer = io.BytesIO()
    np.savez(buffer, candidate=result[0], real=result[1], explained=result[2])
    try:
        cache.store.write_bytes(key, buffer.getvalue())
    except WriteError:
        pass
    return result
