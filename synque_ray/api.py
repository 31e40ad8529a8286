"""The engine as a library: `score` a job and `open_run` a published one, as `synque` does.

The command line is a thin layer over these: the same validation, the same files, the same
report. A mistake in the input raises `UserError`, whose message is the one line the CLI prints
before exiting 2; a run that computed but has nothing honest to publish raises `RunFailed` (the
CLI's exit 1). A run in which some candidates failed is still returned, with `Run.failed`
naming them (the CLI prints the run, then exits 1).

    import synque_ray
    run = synque_ray.score("configs/demo.yaml")       # or a dict shaped like the YAML
    run.verdict.train_on                              # ['gen00_degraded00']
    run.rankings.filter(pl.col("proxy") == "ensemble")

Heavy modules (Ray, the models, the pipeline) are imported when a function needs them, so that
`import synque_ray` stays cheap for Ray's workers and for a notebook.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

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

    output: the output folder it was published under; stamp: its set, `runs/<stamp>/` (None: the
    set `LATEST` names when the run was opened). `failed` names the candidates whose tasks failed
    in the `score` call that made it (empty for a run opened from disk: read `run.json`)."""

    def __init__(self, output: str, stamp: str | None = None, failed: dict[str, str] | None = None) -> None:
        from synque_ray.errors import UserError
        from synque_ray.runfiles import latest_stamp, run_info
        from synque_ray.storage import Store

        root = Store(output)
        stamp = stamp if stamp is not None else latest_stamp(root)
        folder = root.child(f"runs/{stamp}") if stamp and root.exists(f"runs/{stamp}/run.json") else root
        if not folder.exists("run.json"):
            raise UserError(f"{folder.display('run.json')}: not found: not a published run (run `synque score` "
                            "first, or give the output folder)")
        self.output = root.display()
        self.stamp = stamp if folder is not root else None
        self._root, self._folder = root, folder
        self.info: dict[str, Any] = run_info(folder)
        self.failed: dict[str, str] = dict(failed or {})

    def __repr__(self) -> str:
        return f"Run({self.output!r}, stamp={self.stamp!r})"

    @property
    def path(self) -> str:
        """The folder of this run's own output set (`<output>/runs/<stamp>`)."""
        return self._folder.display()

    @property
    def config(self) -> dict[str, Any]:
        """The job's checked config as the run recorded it (run.json's `config`)."""
        return dict(self.info.get("config") or {})

    @property
    def report_path(self) -> str:
        """This run's report.html (written by every `score`)."""
        return self._folder.display("report.html")

    def _table(self, name: str, required: bool = True) -> pl.DataFrame | None:
        from synque_ray.runfiles import run_table

        return run_table(self._folder, name, required=required)

    @functools.cached_property
    def rankings(self) -> pl.DataFrame:
        """rankings.parquet: per (candidate, proxy) the mean score, rank, interval, best set and findings."""
        table = self._table("rankings.parquet")
        assert table is not None
        return table

    @functools.cached_property
    def scores(self) -> pl.DataFrame:
        """scores.parquet: per (candidate, proxy, seed) the raw value and the oriented score."""
        table = self._table("scores.parquet")
        assert table is not None
        return table

    @functools.cached_property
    def row_scores(self) -> pl.DataFrame | None:
        """row_scores.parquet: per candidate row and seed, its row signals; None where the run has none."""
        return self._table("row_scores.parquet", required=False)

    @functools.cached_property
    def verdict(self) -> Verdict:
        level = float(self.config.get("ranking", {}).get("level", 0.9))
        return verdict_of(self.rankings, level)

    def _location(self) -> str:
        """Where evaluate and select read: the output folder while this run is the one published
        there (so that its top-level copies follow), else this run's own folder."""
        from synque_ray.runfiles import latest_stamp

        return self.output if self.stamp is None or latest_stamp(self._root) == self.stamp else self.path

    def evaluate(self, performance: str, id_column: str, metric: str, top_k: int = 3) -> dict:
        """Score the proxies against measured performance (a CSV of `id_column`, `metric`), as
        `synque evaluate` does: writes evaluation.json into the run's set and rewrites its report.

        Returns: evaluation.json's content (per proxy: Spearman, Pearson, top-k, decision accuracy)."""
        from synque_ray.evaluate import evaluate_run
        from synque_ray.report import write_report

        report = evaluate_run(self._location(), performance, id_column, metric, top_k)
        write_report(self.output, stamp=self.stamp)
        return report

    def select(self, by: str, top: int, out: str, drop_rows: tuple[str, ...] | list[str] = (),
               dedupe: bool = False, allow_empty: bool = False, overwrite: bool = False) -> dict:
        """Write the `top` candidates by `by` (a proxy or "ensemble") into `out` in their input format,
        without the rows the `drop_rows` rules ("SIGNAL>VALUE") flag, as `synque select` does.

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

    Returns: the published `Run` (`Run.failed` names candidates whose tasks failed).
    Raises: `UserError` (one line) for a mistake in the config or the inputs; `RunFailed` when
    nothing honest can be published."""
    summary = run_summary(checked_config(config), fresh=fresh, progress=not quiet)
    return Run(summary.output, summary.stamp, failed=summary.failed)


def open_run(path: str | Path) -> Run:
    """The run published under an output folder (the set its `LATEST` names), or a run's own folder.

    Raises: `UserError` when there is no published run there."""
    return Run(str(path))
