"""`synque report`: a run folder → one self-contained HTML page (docs/architecture.md; docs/statistics.md).

Split by concern: `load` reads the run (optional pieces become notes), `view` computes
what is shown (pure), `plots` draws it, `render` lays out the HTML. This module wires
them and writes the page atomically.
"""

from __future__ import annotations

import os

import polars as pl
import pyarrow.fs as pafs

from synque_ray.errors import UserError
from synque_ray.findings import flagged_lines, with_findings
from synque_ray.report import load, plots, render, view
from synque_ray.runfiles import copy_if_latest
from synque_ray.storage import Store
from synque_ray.verdict import verdict
from synque_ray.vocabulary import REPORT_FILE


def candidate_view(run: load.RunData, dataset_id: str, cell: dict | None, inputs: load.CandidateInputs,
                   findings: dict | None = None) -> view.CandidateView:
    """One candidate's section from its tables, its findings (the ranking table's row, so that
    the section and the table give one number) and the inputs read for it."""
    result = view.CandidateView(dataset_id, view.anchor(dataset_id), cell, notes=list(inputs.notes),
                                duplicate_share=(findings or {}).get("duplicate_share"))
    if run.row_scores is not None:
        rows = run.row_scores.filter(pl.col("dataset_id") == dataset_id)
        result.rows = view.rows_scored(rows)
        texts = inputs.file.texts if inputs.file is not None else None
        result.signals, result.synthetic_looking, result.real_looking = view.example_rows(rows, texts)
    candidate, real = inputs.embeddings, inputs.real_embeddings
    if candidate is not None and real is not None:
        result.projection = load.projection(
            run, dataset_id, lambda: view.pca_2d(candidate, real),
            f"pca{view.PROJECTION_POINTS}s0")
    if inputs.rubrics:
        result.rubric_seed = min(inputs.rubrics)
        result.rubric = inputs.rubrics[result.rubric_seed]
    if run.judgements is not None:
        result.judgements = view.judgement_means(run.judgements, dataset_id)
    return result


def _meta(run: load.RunData) -> list[str]:
    info = run.info
    counts = info.get("counts", {})
    seeds = info.get("config", {}).get("real", {}).get("seeds", [])
    lines = [f"run {info.get('started_at', '?')} · {counts.get('candidates_total', '?')} candidates · "
             f"{len(seeds)} seed(s) · embedding model {info.get('models', {}).get('embedding', '?')}",
             f"from {run.location}"]
    failed = len(info.get("failed", {})) + len(info.get("failures", []))
    if failed or info.get("incomplete"):
        lines.append(f"{failed} failed result(s) and {len(info.get('incomplete', {}))} incomplete candidate(s): "
                     "see run.json")
    return lines


def _candidates(run: load.RunData, ranking: view.RankingView) -> list[tuple[view.CandidateView, str | None]]:
    """Each candidate's view and projection, read and drawn one at a time (bounded memory)."""
    paths, files_note = load.candidate_files(run)
    real, real_note = load.real_embeddings(run)
    if files_note:
        run.notes["files"] = files_note
    if real_note:
        run.notes["real"] = real_note + ": no projections"
    out = []
    for row in ranking.rows:
        dataset_id = row["dataset_id"]
        inputs = load.candidate_inputs(run, dataset_id, paths, real)
        if real is None:
            inputs.notes = [n for n in inputs.notes if "embedding cache" not in n]
        section = candidate_view(run, dataset_id, row["cells"].get(ranking.lead), inputs, row.get("findings"))
        image = plots.projection(*section.projection[:2]) if section.projection is not None else None
        out.append((section, image))
    return out


def build_page(run: load.RunData) -> render.Page:
    ids = run.info.get("content_hashes", {}).get("candidates", {})
    run.rankings = with_findings(run.rankings, run.row_scores)  # a run from before findings gets them here
    level = run.info.get("config", {}).get("ranking", {}).get("level", 0.9)
    ranking = view.ranking_view(run.rankings, list(ids))
    ranked = set(run.rankings["dataset_id"].to_list())
    order = [row["dataset_id"] for row in ranking.rows if row["dataset_id"] in ranked]  # one order, every plot
    spread = view.score_spread(run.scores, run.rankings, order)
    evaluation = view.evaluation_view(run.evaluation, spread, run.info.get("started_at"))
    points = (evaluation or {}).get("points", {})
    return render.Page(
        title=f"synque report: {run.info.get('name', run.location)}",
        meta=_meta(run),
        ranking=ranking,
        spread_images=plots.score_panels(spread) if order else [],
        agreement=view.agreement(run.rankings),
        evaluation=evaluation,
        evaluation_images=(plots.evaluation_panels(points, evaluation["labels"], evaluation["metric"])
                           if evaluation is not None and points else []),
        history=view.history_view(run.history, ranking.lead),
        candidates=_candidates(run, ranking),
        notes=run.notes,
        verdict=verdict(run.rankings, level),
        flagged=flagged_lines(run.rankings),
        level=level,
    )


def split_location(target: str) -> tuple[Store, str]:
    """(the store of a file's folder, the file's name) for a local path or a URI. A local link is
    followed, so that the file it points to is replaced and the link stays."""
    if "://" in target:
        base, mark, query = target.partition("?")
    else:
        base, mark, query = os.path.realpath(target) if os.path.islink(target) else target, "", ""
    folder, _, name = base.rstrip("/").rpartition("/")
    return Store((folder or ("/" if base.startswith("/") else ".")) + mark + query), name


def check_file_target(target: str, store: Store, name: str) -> None:
    """A report goes to a regular file or a new one: a folder, a device (`/dev/full`), a pipe or a
    socket is refused, since the atomic write would replace it with the page."""
    kind = store.fs.get_file_info(store.path(name)).type
    if kind == pafs.FileType.Directory:
        raise UserError(f"{target}: is a folder; give the HTML file to write, e.g. {target.rstrip('/')}/report.html")
    if kind not in (pafs.FileType.File, pafs.FileType.NotFound):
        raise UserError(f"{target}: is not a regular file (a device, a pipe or a socket); give the HTML file to "
                        "write, a new one or one to replace")


def write_report(run_dir: str, targets: list[str] | None = None, stamp: str | None = None) -> list[str]:
    """Render the report of the run's published set (or of `runs/<stamp>/`) and write it (atomically) to
    each target, by default into that set; returns where it was written (the top-level copy first
    when the set is the published one). A target that is not a regular file or a new one is refused
    before anything is drawn."""
    places = [split_location(target) for target in targets or []]
    for target, (store, name) in zip(targets or [], places, strict=True):
        check_file_target(target, store, name)
    run = load.load_run(run_dir, stamp)
    html = render.render_page(build_page(run)).encode("utf-8")
    if targets:
        for store, name in places:
            store.write_bytes(name, html)
        return targets
    folder, root = Store(run.folder), Store(run_dir)
    folder.write_bytes(REPORT_FILE, html)
    if copy_if_latest(root, folder, REPORT_FILE):
        return [root.display(REPORT_FILE), folder.display(REPORT_FILE)]
    return [folder.display(REPORT_FILE)]
