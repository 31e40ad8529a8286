"""A scoring job end to end: read → stages (embedding proxies, LENS) → reduce → write.

Each stage (`synque_ray.stage`) commits per-candidate results as they finish under
`results/`, keyed by everything they depend on, so that a re-run or a resumed run only
computes what is new or changed; rankings are always recomputed over all candidates.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import polars as pl

from synque_ray.config import JobConfig, RankingConfig
from synque_ray.errors import RunFailed, UserError
from synque_ray.evaluate import carry_evaluation
from synque_ray.findings import add_findings, demoted, passed_over
from synque_ray.lens.stage import LensStage
from synque_ray.reading import RowSet, read_texts, sample_pool, scan_candidates
from synque_ray.reduce import add_ensemble, ensemble_weights, incomplete, rank, split_failures
from synque_ray.rowschema import row_scores_table
from synque_ray.runfiles import latest_stamp, publish_set
from synque_ray.stage.base import Stage, StageOutcome, real_hashes, run_stage
from synque_ray.stage.registry import Job, build_stages
from synque_ray.storage import Store, lock_output
from synque_ray.vocabulary import RANKINGS_FILE, ROW_SCORES_FILE, RUN_FILE, SCORE_SCHEMA, SCORES_FILE


@dataclass
class RunSummary:
    output: str
    run_dir: str
    counts: dict
    timings: dict
    rankings: pl.DataFrame
    scores: pl.DataFrame = field(repr=False)
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> why its tasks failed
    failures: list[dict] = field(default_factory=list)  # (candidate, proxy, seed) results that are not numbers
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # candidate -> proxy@seed it lacks
    lens_skipped: list[str] = field(default_factory=list)  # left out of LENS by the cascade
    skipped_files: dict[str, str] = field(default_factory=dict)  # path -> why it is not a candidate
    missing_proxies: dict[str, str] = field(default_factory=dict)  # proxy -> first error (allow_partial)
    notes: list[str] = field(default_factory=list)  # e.g. a stale lock taken over
    stamp: str = ""  # the published set: runs/<stamp>/, named by LATEST


# ---------------------------------------------------------------- reading and checks

EVALUATION_SET = "contamination/evaluation"  # its row set's name: no candidate id holds a "/"


def read_real(config: JobConfig) -> dict[int, RowSet]:
    real = config.real
    if real.samples is not None:
        return {
            seed: RowSet(f"real/seed{seed}", read_texts(path, real.text))
            for seed, path in zip(real.seeds, real.samples, strict=True)
        }
    assert real.path is not None  # RealConfig holds exactly one of path and samples
    pool = read_texts(real.path, real.text)
    return {
        seed: RowSet(f"real/seed{seed}", sample_pool(pool, real.sample_size, seed, real.path)) for seed in real.seeds
    }


def read_contamination(config: JobConfig) -> RowSet | None:
    """The contamination (evaluation) set the config names, read as `real` is; None without one."""
    if config.contamination is None:
        return None
    return RowSet(EVALUATION_SET, read_texts(config.contamination.path, config.contamination.text))


def minimum_rows(config: JobConfig, real: bool = False) -> tuple[int, str]:
    """The fewest rows a candidate (or a real sample) may have, and which proxy needs them."""
    needs = [(1, "scoring")]
    for name in config.sized_proxies:
        params = config.proxy_params(name)
        needs.append(params.min_real_rows() if real else params.min_rows())
    return max(needs)


def size_problem(rowset: RowSet, source: str, config: JobConfig, real: bool = False) -> str | None:
    """Why `rowset` has too few rows for the config's proxies (one line naming `source`), or None."""
    least, reason = minimum_rows(config, real)
    if rowset.size < least:
        return f"{source}: {rowset.size} rows, fewer than the {least} that {reason} needs"
    return None


def check_size(rowset: RowSet, source: str, config: JobConfig, real: bool = False) -> None:
    """A UserError when `rowset` is too small for the config's proxies (a U_r sample: for the run)."""
    problem = size_problem(rowset, source, config, real)
    if problem is not None:
        raise UserError(problem)


def check_sample_size(config: JobConfig) -> None:
    """`candidates.sample_size` below what a proxy needs makes every candidate too small: a UserError."""
    least, reason = minimum_rows(config)
    sample = config.candidates.sample_size
    if sample is not None and sample < least:
        raise UserError(f"candidates.sample_size: {sample} rows, fewer than the {least} that {reason} needs")


def resolve_for_run(config: JobConfig, real: dict[int, RowSet], candidates: list[RowSet]) -> JobConfig:
    """The config with every proxy parameter that depends on the whole run resolved (`Params.for_run`:
    PAD's `train_rows: auto`), from the rows each candidate is scored on (at most
    `candidates.sample_size`) and each U_r sample's. The one place it happens, before any stage is
    built: the resolved values key the results and are what run.json's config records."""
    sample = config.candidates.sample_size
    candidate_rows = [c.size if sample is None else min(c.size, sample) for c in candidates]
    real_rows = [rowset.size for rowset in real.values()]
    update = {name: config.proxy_params(name).for_run(candidate_rows, real_rows) for name in config.sized_proxies}
    return config.model_copy(update=update)


def read_candidates(config: JobConfig, skipped: dict[str, str] | None = None,
                    too_small: dict[str, str] | None = None) -> list[RowSet]:
    """The candidates, each hashed once; entries of the folder that are not candidates go to `skipped`.

    A candidate with fewer rows than a proxy needs is a UserError, unless `too_small` is given:
    then it is left out and recorded there (id -> the one-line reason), so that it fails alone
    and the others are scored."""
    check_sample_size(config)
    found, passed_over = scan_candidates(config.candidates.path)
    if skipped is not None:
        skipped.update(passed_over)
    rowsets = []
    for dataset_id, path in found:
        rowset = RowSet(dataset_id, path=path, spec=config.candidates.text)
        problem = size_problem(rowset, str(path), config)
        if problem is None:
            rowsets.append(rowset)
        elif too_small is None:
            raise UserError(problem)
        else:
            too_small[dataset_id] = problem
    return rowsets


def scorable_candidates(config: JobConfig, skipped: dict[str, str], too_small: dict[str, str]) -> list[RowSet]:
    """`read_candidates` for a run: too-small candidates go to `too_small` and fail alone; when
    every candidate is too small nothing can be ranked, and that is one UserError (the first's reason)."""
    candidates = read_candidates(config, skipped, too_small)
    if not candidates:
        first = next(iter(too_small.values()))
        others = len(too_small) - 1
        raise UserError(first + (f" (and {others} other candidate(s) are too small too: nothing to rank)"
                                 if others else ""))
    return candidates


def same_texts(candidates: list[RowSet]) -> list[list[str]]:
    """The groups (in candidate order) of two or more candidates with the same texts, by content
    hash: a copied file, or a BOM, CRLF or id-mapping variant of one. Each is scored once and
    ranked under each name."""
    groups: dict[str, list[str]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.content_hash, []).append(candidate.name)
    return [names for names in groups.values() if len(names) > 1]


def identical_candidates(candidates: list[RowSet]) -> dict[str, str]:
    """{candidate: the other candidates with the same texts, comma-separated}, for each that has one."""
    return {name: ", ".join(other for other in names if other != name)
            for names in same_texts(candidates) for name in names}


def twin_notes(candidates: list[RowSet]) -> list[str]:
    """One line per group of candidates with the same texts, for the terminal's notes."""
    return [f"{', '.join(names)} hold the same texts: scored once, ranked under each name"
            for names in same_texts(candidates)]


# ---------------------------------------------------------------- versions (run.json)


def _versions() -> dict:
    names = ["ray", "sentence-transformers", "torch", "scikit-learn", "xgboost", "kmedoids", "mauve-text", "polars"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), **found}


# ---------------------------------------------------------------- the job


def run_job(config: JobConfig, fresh: bool = False, progress: bool = False,
            finish: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Score the config's candidates and publish the run's outputs as one set.

    `finish(summary)` runs after the set's tables and run.json are written and before the
    pointer switches (the CLI writes the report there), so what it adds under
    `runs/<summary.stamp>/` is part of the set. The output folder is locked throughout."""
    started = time.perf_counter()
    # Everything the user gave is read and checked before anything is written.
    real = read_real(config)
    for seed, rowset in real.items():
        check_size(rowset, f"real sample for seed {seed}", config, real=True)
    evaluation = read_contamination(config)
    skipped_files: dict[str, str] = {}
    too_small: dict[str, str] = {}  # id -> why: these fail alone, the others are scored
    candidates = scorable_candidates(config, skipped_files, too_small)
    config = resolve_for_run(config, real, candidates)
    stages = build_stages(Job(config, real, candidates, fresh, progress, evaluation))  # checked before any work
    timings = {"read": time.perf_counter() - started}

    store = Store(config.output)
    lock = lock_output(store)  # a second run on this output refuses here, before any work
    try:
        drop_unpublished(store)
        outcomes: list[StageOutcome] = []
        for stage in stages:
            outcomes.append(run_stage(stage, candidates, store, fresh, earlier=outcomes))
            timings.update({stage.name: outcomes[-1].seconds, **stage.timings})

        reduce_started = time.perf_counter()
        tables, summary = reduce_outcomes(outcomes, candidates, list(real), config.ranking, too_small)
        summary["missing_proxies"] = check_proxies(config, tables[SCORES_FILE], summary["failures"],
                                                   summary["failed"])
        summary["skipped_files"] = skipped_files
        timings["reduce"] = time.perf_counter() - reduce_started
        timings["total"] = time.perf_counter() - started
        summary["counts"]["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        run_info = run_record(config, fresh, stages, outcomes, candidates, real, timings, summary, evaluation)
        run_dir = write_set(store, tables, run_info)
        notes = [lock.note] if lock.note else []
        notes += twin_notes(candidates)
        evaluated = carry_evaluation(store, run_dir, tables[SCORES_FILE], tables[RANKINGS_FILE],
                                     run_info["started_at"])  # before the report, which shows it
        result = RunSummary(store.display(), store.display(run_dir), summary["counts"], timings,
                            tables[RANKINGS_FILE], tables[SCORES_FILE], summary["failed"],
                            summary["failures"], summary["incomplete"], summary["lens_skipped"], skipped_files,
                            summary["missing_proxies"], notes + ([evaluated] if evaluated else []),
                            run_info["started_at"])
        if finish is not None:
            finish(result)
        publish(store, result.stamp)
        return result
    finally:
        lock.release()


def check_proxies(config: JobConfig, scores: pl.DataFrame, failures: list[dict], failed: dict[str, str]
                  ) -> dict[str, str]:
    """Proxies of the config without a single usable result, each with its first error.

    Unless the config says `allow_partial: true`, one such proxy ends the run (`RunFailed`,
    nothing published): an ensemble that quietly lost a proxy ranks by something other
    than what the config asks for."""
    present = set(scores.get_column("proxy").unique().to_list())
    missing = {}
    for proxy in config.proxies:
        if proxy in present:
            continue
        first = next((f for f in failures if f["proxy"] == proxy), None)
        missing[proxy] = (f"{first['dataset_id']} seed {first['seed']}: {first['error']}" if first else
                          next(iter(failed.values()), "no result came back"))
    if missing and not config.allow_partial:
        proxy, error = next(iter(missing.items()))
        raise RunFailed(f"proxy '{proxy}' failed for every candidate (first error: {error}); nothing was "
                        "published (set allow_partial: true to publish the other proxies without it)")
    return missing


def drop_unpublished(store: Store) -> None:
    """Remove the sets of runs killed before their pointer switched (newer than the one `LATEST`
    names); run under the output's lock, so no live run's set is touched."""
    latest = latest_stamp(store)
    if latest is None:
        return  # outputs written before pointers: every set there was published
    for name, is_folder in store.listing("runs") or []:
        if is_folder and name > latest:
            store.delete(f"runs/{name}")


def candidate_counts(outcomes: list[StageOutcome], candidates: list[RowSet],
                     unscored: dict[str, str] | None = None) -> dict[str, int]:
    """A candidate failed if any stage failed it (or it was `unscored`: too small to score), was
    scored if any stage computed it, else reused (its result, or its twin's, was committed)."""
    failed = {name for o in outcomes for name in o.failed} | set(unscored or {})
    computed = {name for o in outcomes for name in o.computed} - failed
    total = len(candidates) + len(unscored or {})
    return {"candidates_total": total, "candidates_scored": len(computed),
            "candidates_reused": total - len(computed) - len(failed), "candidates_failed": len(failed)}


def reduce_outcomes(outcomes: list[StageOutcome], candidates: list[RowSet], seeds: list[int],
                    ranking: RankingConfig, unscored: dict[str, str] | None = None
                    ) -> tuple[dict[str, pl.DataFrame], dict]:
    """The output tables and the run's summary (counts, failures, the ensemble's weights, recorded
    in run.json as `ensemble: {method, weights}`) from every stage's outcome. `unscored`: the
    candidates no stage was given (too small), id -> why; they are failed, with that reason."""
    failed = {**(unscored or {}), **{name: reason for o in outcomes for name, reason in o.failed.items()}}
    frames = [o.scores for o in outcomes if o.scores.height]
    if not frames:
        name, reason = next(iter(failed.items()), ("none", "none"))
        raise RunFailed(f"every candidate failed; nothing was published (first error: {name}: {reason})")
    skipped = {name: {o.name} for o in outcomes for name in o.skipped}
    usable, failures = split_failures(pl.concat(frames, how="vertical_relaxed"))
    weights = ensemble_weights(usable, ranking.ensemble)
    with_ensemble = add_ensemble(usable, exempt=skipped, weights=weights)
    missing = incomplete(usable, seeds, exempt=skipped)
    row_scores = row_scores_table([part for o in outcomes for part in o.rows],
                                  [column for o in outcomes for column in o.row_columns])
    passed = passed_over(row_scores)
    tables = {
        SCORES_FILE: with_ensemble.select(list(SCORE_SCHEMA)).sort(["proxy", "dataset_id", "seed"]),
        RANKINGS_FILE: add_findings(rank(with_ensemble, level=ranking.level, top=ranking.top,
                                         passed_over=passed, demoted=demoted(passed),
                                         rows={c.name: c.size for c in candidates} or None),
                                    row_scores, identical_candidates(candidates)),
        ROW_SCORES_FILE: row_scores,
        **{name: table for o in outcomes for name, table in o.tables.items()},
    }
    counts: dict[str, Any] = candidate_counts(outcomes, candidates, unscored)  # ints, and "stages" below
    counts.update({key: value for o in outcomes for key, value in o.counts.items()
                   if key not in ("scored", "reused", "failed", "skipped")})
    counts.update(rows_embedded=counts.get("rows_embedded", 0), rows_from_cache=counts.get("rows_from_cache", 0),
                  results_failed=failures.height, candidates_incomplete=len(missing))
    counts["stages"] = {o.name: {k: o.counts[k] for k in ("scored", "reused", "failed", "skipped")} for o in outcomes}
    lens_skipped = sorted(name for name, stages in skipped.items() if LensStage.name in stages)
    return tables, {"counts": counts, "failed": failed, "failures": failures.to_dicts(), "incomplete": missing,
                    "lens_skipped": lens_skipped, "ensemble": {"method": ranking.ensemble, "weights": weights}}


def run_record(config: JobConfig, fresh: bool, stages: list[Stage], outcomes: list[StageOutcome],
               candidates: list[RowSet], real: dict[int, RowSet], timings: dict, summary: dict,
               evaluation: RowSet | None = None) -> dict:
    """run.json: what was run, on what, with which models, and what came of it."""
    return {
        "name": config.name,
        "started_at": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ"),
        "config": config.model_dump(),
        "fresh": fresh,
        "versions": _versions(),
        "models": {key: value for stage in stages for key, value in stage.models.items()},
        "content_hashes": {
            "candidates": {c.name: c.content_hash for c in candidates},
            "real": real_hashes(real),
            "contamination": None if evaluation is None else evaluation.content_hash,
        },
        "result_keys": {o.name: o.keys for o in outcomes},
        "timings": {k: round(v, 4) for k, v in timings.items()},
        **summary,
        "command": " ".join(sys.argv),
    }


def write_set(store: Store, tables: dict[str, pl.DataFrame], run_info: dict) -> str:
    """Write the run's output set under `runs/<stamp>/` (each file atomic); not yet published."""
    run_dir = f"runs/{run_info['started_at']}"
    for name, table in tables.items():
        store.write_table(f"{run_dir}/{name}", table.to_arrow())
    store.write_json(f"{run_dir}/{RUN_FILE}", run_info)
    return run_dir


def publish(store: Store, stamp: str) -> None:
    """Make the written set the published one: on a local folder the top level shows the old set or
    the new one at every kill point, never a mix (`runfiles.publish_set`)."""
    publish_set(store, stamp)
