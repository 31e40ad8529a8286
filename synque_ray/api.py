"""The engine as a library: `score` a job and `open_run` a published one, as `synque` does.

The command line is a thin layer over this module: each command parses its arguments, makes
one call here (`score`, `demo`, `explain`, or a `Run`'s `evaluate`, `select`, `write_report`)
and prints what comes back, so that the library and the CLI cannot drift apart: the same
validation, the same files, the same report. A mistake in the input raises `UserError`, whose
message is the one line the CLI prints before exiting 2; a run that computed but has nothing
honest to publish raises `RunFailed` (the CLI's exit 1). A run in which some candidates failed
is still returned, with `Run.failed` naming them (the CLI prints the run, then exits 1).

    import synque_ray
    run = synque_ray.score("configs/demo.yaml")       # or a dict shaped like the YAML
    run.verdict.train_on                              # ['gen00_degraded00']
    run.rankings.filter(pl.col("proxy") == "ensemble")

Heavy modules (Ray, the models, the pipeline) are imported when a function needs them, so that
`import synque_ray` stays cheap for Ray's workers and for a notebook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from synque_ray.vocabulary import (EVALUATION_FILE, RANKINGS_FILE, REPORT_FILE, ROW_SCORES_FILE, RUN_FILE,
                                   SCORES_FILE)

if TYPE_CHECKING:
    from synque_ray.config import JobConfig
    from synque_ray.pipeline import RunSummary


@dataclass(frozen=True)
class Verdict:
    """The answer of a run, as the terminal and the report give it.

    train_on: the candidates to train on (the best set of the lead ranking, without the
    candidates passed over), best first. next: the best candidate outside them, None when there is
    none. passed_over: candidates left out for copying the real sample or for garbled rows.
    flagged: per flagged candidate, its findings over their limit, worst first.
    lines: the verdict's lines; text: those and one `flagged:` line per flagged candidate."""

    train_on: list[str]
    next: str | None
    passed_over: list[str]
    flagged: dict[str, list[str]]
    lines: list[str]
    text: str


def verdict_of(rankings: pl.DataFrame, level: float) -> Verdict:
    """The `Verdict` of a ranking table (with its findings columns) at `ranking.level`."""
    from synque_ray.findings import flagged_lines, over_limit, per_candidate
    from synque_ray.verdict import choose, verdict

    choice = choose(rankings)
    lines = verdict(rankings, level)
    flagged = {row["dataset_id"]: over for row in per_candidate(rankings).iter_rows(named=True)
               if (over := over_limit(row))}
    return Verdict(train_on=choice.train_on, next=choice.after["dataset_id"] if choice.after else None,
                   passed_over=sorted(choice.passed), flagged=flagged, lines=lines,
                   text="\n".join([*lines, *flagged_lines(rankings)]) if rankings.height else "\n".join(lines))


class Run:
    """One published run: its tables (polars, read when first asked for), its verdict and report.

    `Run(location)` opens the run published under an output folder (the set its `LATEST` names)
    or a run's own folder, reading nothing yet: a file the run lacks is named, as a `UserError`,
    by the first call that needs it (`open_run` checks up front that a run is there).

    output: the output folder it was published under; stamp: its set, `runs/<stamp>/` (None: the
    location is a run's own folder, or outputs written before sets had stamps). `summary`: what
    the `score` call that made it did (a `pipeline.RunSummary`: counts, timings, failures, notes;
    None for a run opened from disk, whose run.json records the same but the notes). `failed`
    names the candidates whose tasks failed in that call (empty for a run opened from disk: read
    `info["failed"]`)."""

    def __init__(self, output: str, stamp: str | None = None, summary: RunSummary | None = None) -> None:
        from synque_ray.runfiles import latest_stamp
        from synque_ray.storage import Store

        root = Store(output)
        stamp = stamp if stamp is not None else latest_stamp(root)
        folder = root.child(f"runs/{stamp}") if stamp and root.exists(f"runs/{stamp}/{RUN_FILE}") else root
        self.output = root.display()
        self.stamp = stamp if folder is not root else None
        self._root, self._folder = root, folder
        self.summary = summary
        self.failed: dict[str, str] = dict(summary.failed) if summary is not None else {}

    def __repr__(self) -> str:
        return f"Run({self.output!r}, stamp={self.stamp!r})"

    @property
    def path(self) -> str:
        """The folder of this run's own output set (`<output>/runs/<stamp>`)."""
        return self._folder.display()

    @functools.cached_property
    def info(self) -> dict[str, Any]:
        """run.json: what was run, on what, with which models, and what came of it."""
        from synque_ray.runfiles import run_info

        return run_info(self._folder)

    @property
    def config(self) -> dict[str, Any]:
        """The job's checked config as the run recorded it (run.json's `config`)."""
        return dict(self.info.get("config") or {})

    @property
    def level(self) -> float:
        """`ranking.level`: the confidence the run's rank intervals and best set are stated at."""
        return float(self.config.get("ranking", {}).get("level", 0.9))

    @property
    def report_path(self) -> str:
        """This run's report.html (written by every `score`)."""
        return self._folder.display(REPORT_FILE)

    def _table(self, name: str, required: bool = True) -> pl.DataFrame | None:
        from synque_ray.runfiles import run_table

        return run_table(self._folder, name, required=required)

    @functools.cached_property
    def rankings(self) -> pl.DataFrame:
        """rankings.parquet: per (candidate, proxy) the mean score, rank, interval, best set and findings."""
        table = self._table(RANKINGS_FILE)
        assert table is not None
        return table

    @functools.cached_property
    def scores(self) -> pl.DataFrame:
        """scores.parquet: per (candidate, proxy, seed) the raw value and the oriented score."""
        table = self._table(SCORES_FILE)
        assert table is not None
        return table

    @functools.cached_property
    def row_scores(self) -> pl.DataFrame | None:
        """row_scores.parquet: per candidate row and seed, its row signals; None where the run has none."""
        return self._table(ROW_SCORES_FILE, required=False)

    @functools.cached_property
    def evaluation(self) -> dict | None:
        """evaluation.json: how the proxies agree with measured (or, for the demo, known) performance,
        per proxy; None where the run has not been evaluated."""
        found = self._folder.read_json(EVALUATION_FILE)
        return found if isinstance(found, dict) else None

    @functools.cached_property
    def verdict(self) -> Verdict:
        """The run's answer: what to train on, what comes next, what was passed over or flagged."""
        return verdict_of(self.rankings, self.level)

    def _location(self) -> str:
        """Where evaluate, select and the report read: the output folder while this run is the one
        published there (so that its top-level copies follow), else this run's own folder."""
        from synque_ray.runfiles import latest_stamp

        return self.output if self.stamp is None or latest_stamp(self._root) == self.stamp else self.path

    def write_report(self, out: str | None = None) -> str:
        """Render this run's report.html again, as `synque report` does (after an evaluation, say).

        Args:
            out: a file path or URI to write it to; None: into the run's set (and the top-level
                copy while the run is the published one).

        Returns: where it was written: `out`, else the top-level report.html while this run is the
        published one, else its own (`report_path`)."""
        from synque_ray.report import write_report

        return write_report(self.output, [out] if out else None, stamp=self.stamp)[0]

    def evaluate(self, performance: str, id_column: str, metric: str, top_k: int = 3, report: bool = True) -> dict:
        """Score the proxies against measured performance, as `synque evaluate` does: writes
        evaluation.json into the run's set; later runs on the same output re-read the CSV and
        carry the evaluation forward.

        Args:
            performance: a CSV with one row per candidate.
            id_column: its column holding the candidates' ids.
            metric: its column holding the measured performance (higher is better).
            top_k: how many best-scored candidates the top-k performance averages.
            report: rewrite report.html so that it shows the evaluation (False: leave that to a
                later `write_report`).

        Returns: evaluation.json's content (per proxy: Spearman, Pearson, top-k, decision accuracy)."""
        from synque_ray.evaluate import evaluate_run

        found = evaluate_run(self._location(), performance, id_column, metric, top_k)
        self.__dict__.pop("evaluation", None)  # read again when next asked for
        if report:
            self.write_report()
        return found

    def select(self, by: str, top: int, out: str, drop_rows: tuple[str, ...] | list[str] = (),
               dedupe: bool = False, allow_empty: bool = False, overwrite: bool = False) -> dict:
        """Write the `top` candidates by `by` into `out` in their input format, as `synque select` does.

        Args:
            by: a proxy of the run, or "ensemble".
            top: how many candidates to take, best first.
            out: a new or empty folder (a path or URI); with `overwrite`, an earlier selection's.
            drop_rows: rules over the row signals ("SIGNAL>VALUE", also >=, <, <=; or a yes/no
                signal alone, such as "copies_real"): a row flagged under any seed is left out.
            dedupe: keep one row per near-duplicate group, after the `drop_rows` rules.
            allow_empty: list a candidate the rules leave no row, writing no file for it
                (default: refuse).
            overwrite: replace the earlier selection in `out` (only the files it lists).

        Returns: selection.json's content (what was chosen, by what, which rows were dropped)."""
        from synque_ray.selection import select

        return select(self._location(), by, top, out, list(drop_rows), dedupe=dedupe, allow_empty=allow_empty,
                      overwrite=overwrite)


def checked_config(config: str | Path | dict, check_inputs: bool = True) -> JobConfig:
    """A job config read from a YAML file or a dict shaped like it, checked as `synque score` checks it
    (`check_inputs`: its input paths too; the demo writes its inputs after reading its config)."""
    from synque_ray.config import check_config, load_config

    if isinstance(config, dict):
        return check_config(config, "config", check_inputs)
    return load_config(config, check_inputs=check_inputs)


def run_summary(config: JobConfig, fresh: bool = False, progress: bool = False, finish=None) -> RunSummary:
    """Run a checked job and publish its set with its report written in; a write that fails (disk
    full, read-only folder) is a `UserError` that names the path and what stays committed."""
    from synque_ray.errors import UserError
    from synque_ray.pipeline import run_job
    from synque_ray.report import write_report
    from synque_ray.storage import Store, WriteError

    def report_then(summary: RunSummary) -> None:
        if finish is not None:
            finish(summary)
        write_report(summary.output, stamp=summary.stamp)

    try:
        return run_job(config, fresh=fresh, progress=progress, finish=report_then)
    except WriteError as err:
        kept = _committed_results(config.output)
        raise UserError(f"{err}; {kept} committed result(s) under {Store(config.output).display('results')} are "
                        "kept: free space or make the folder writable, then re-run the same command to resume "
                        "from them") from None


def _committed_results(output: str) -> int:
    """Committed per-candidate results under OUTPUT/results (each a completion mark a re-run reuses)."""
    from synque_ray.storage import Store

    try:
        entries = Store(output).listing("results") or []
    except OSError:
        return 0
    return sum(1 for name, folder in entries if not folder and name.endswith(".parquet")
               and not name.endswith(".rows.parquet"))


def score(config: str | Path | dict, *, fresh: bool = False, quiet: bool = True) -> Run:
    """Score the candidates of a job and publish the run, as `synque score CONFIG` does.

    Args:
        config: a YAML file's path, or a dict shaped like the YAML (relative paths are read from
            the working directory).
        fresh: recompute everything, ignoring committed results.
        quiet: False shows progress bars on the long stages.

    Returns: the published `Run` (`Run.failed` names candidates whose tasks failed, `Run.summary`
    what the call did).
    Raises: `UserError` (one line) for a mistake in the config or the inputs; `RunFailed` when
    nothing honest can be published."""
    summary = run_summary(checked_config(config), fresh=fresh, progress=not quiet)
    return Run(summary.output, summary.stamp, summary=summary)


DEMO_CONFIG = Path(__file__).resolve().parent / "demo.yaml"  # shipped in the package: works from any install


def score_demo(config: str | Path | dict = DEMO_CONFIG, *, fresh: bool = False, quiet: bool = True,
               on_data: Callable[[str, dict[str, float]], None] | None = None) -> Run:
    """Score the embedded demo, as `synque demo` does: write candidates whose quality order is set
    by construction (`synque_ray.demo`) where the config reads them, score them, and evaluate the
    proxies against that order into the run's set before it is published (its report shows it).

    Args:
        config: the demo's job config (a YAML path or a dict); its candidates' parent folder
            receives the data (`candidates/`, `real/pool.jsonl` and `quality.csv`). The default,
            the shipped demo.yaml, writes `demo-data/` and `results/demo/` under the working
            directory.
        fresh: recompute everything, ignoring committed results.
        quiet: False shows progress bars on the long stages.
        on_data: called with the data's folder and the known quality per candidate once the data
            is written, before scoring starts (the CLI says there what it wrote).

    Returns: the published `Run`; `Run.evaluation` holds the agreement with the known order.
    Raises: as `score`."""
    from synque_ray.demo import write_demo_data
    from synque_ray.evaluate import evaluate_scores
    from synque_ray.storage import Store

    checked = checked_config(config, check_inputs=False)  # the data is written next
    data_dir = Path(checked.candidates.path).parent
    quality = write_demo_data(data_dir)
    if on_data is not None:
        on_data(str(data_dir), quality)

    def evaluate_known(summary: RunSummary) -> None:  # into the run's set, before it is published
        found = evaluate_scores(summary.scores, summary.rankings, quality, top_k=3)
        found["run"] = summary.stamp  # the run it evaluated
        found["metric"] = "quality (set by construction)"
        Store(summary.run_dir).write_json(EVALUATION_FILE, found)

    summary = run_summary(checked, fresh=fresh, progress=not quiet, finish=evaluate_known)
    return Run(summary.output, summary.stamp, summary=summary)


def open_run(path: str | Path) -> Run:
    """The run published under an output folder (the set its `LATEST` names), or a run's own folder.

    Args:
        path: the output folder (the config's `output:`, a path or a URI) or a `runs/<stamp>/` folder.

    Returns: the `Run`, its tables read when first used.
    Raises: `UserError` when there is no published run there."""
    from synque_ray.errors import UserError

    run = Run(str(path))
    if not run._folder.exists(RUN_FILE):
        raise UserError(f"{run._folder.display(RUN_FILE)}: not found: not a published run (run `synque score` "
                        "first, or give the output folder)")
    return run


def explain() -> str:
    """What every proxy, column and finding means, as `synque explain` prints it (the report's legend).

    Returns: the legend as text for a terminal: each term, then its meaning indented under it."""
    from synque_ray.legend import legend_text

    return legend_text()
