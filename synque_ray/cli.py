"""`synque` command line (docs/architecture.md), a thin layer over the library (`api.py`).

Each command parses its arguments, makes one call to the library and prints what it returns.
User mistakes (the library's `UserError`) end in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from synque_ray.api import DEMO_CONFIG
from synque_ray.errors import RunFailed, UserError
from synque_ray.vocabulary import EVALUATION_FILE, REPORT_FILE

if TYPE_CHECKING:
    from synque_ray.api import Run
    from synque_ray.pipeline import RunSummary

TERMINAL_FLAGGED = 5  # flagged candidates the terminal lists; the report lists them all


def _print_run(run: Run, quiet: bool = False) -> None:
    """What `_print_summary` prints, for a run this process scored."""
    assert run.summary is not None  # `score` and `score_demo` return their call's summary
    _print_summary(run.summary, run.level, quiet)


def _print_summary(summary: RunSummary, level: float, quiet: bool = False) -> None:
    """The verdict (the library's, `Verdict`) and each flagged candidate's findings, the ranking
    table, then what the `score` call did (counts, failures, times, where the outputs are).
    `quiet`: the table only."""
    from synque_ray.api import verdict_of
    from synque_ray.findings import flagged_lines
    from synque_ray.stage.registry import proxy_times, wall_times
    from synque_ray.verdict import ranking_table_text

    answer = verdict_of(summary.rankings, level)
    table = ranking_table_text(summary.rankings, level, passed_over=answer.passed_over)
    for note in summary.notes:  # the output's state (a stale lock taken over): said whatever --quiet says
        print(f"note: {note}", file=sys.stderr)
    if quiet:
        print(table)
        return
    print("\n".join([*answer.lines, *flagged_lines(summary.rankings, most=TERMINAL_FLAGGED)]) + "\n")
    print(table)
    c, t = summary.counts, summary.timings
    print(
        f"\ncandidates: {c['candidates_total']} total, {c['candidates_scored']} scored, "
        f"{c['candidates_reused']} reused, {c['candidates_failed']} failed | "
        f"rows embedded: {c['rows_embedded']}, from cache: {c['rows_from_cache']}"
    )
    for dataset_id, error in summary.failed.items():
        print(f"failed: {dataset_id}: {error}")
    for failure in summary.failures:
        print(f"not ranked: {failure['dataset_id']} {failure['proxy']} seed {failure['seed']}: {failure['error']}")
    for dataset_id, lacks in summary.incomplete.items():
        print(f"incomplete (left out of the ensemble): {dataset_id} lacks {', '.join(lacks)}")
    for proxy, error in summary.missing_proxies.items():
        print(f"missing proxy (failed for every candidate, allow_partial is on): {proxy}: {error}")
    for path, why in summary.skipped_files.items():
        print(f"skipped (not a candidate): {path}: {why}")
    if summary.lens_skipped:
        print(f"LENS skipped by the cascade (ranked by the other proxies only): {len(summary.lens_skipped)} "
              f"candidate(s): {', '.join(summary.lens_skipped)}")
    stages = ", ".join(f"{k} {t[k]:.1f}s" for k in wall_times() if k in t)
    compute = ", ".join(f"{k} {t[k]:.1f}s" for k in proxy_times() if k in t)
    print(f"time: {stages}" + (f" | proxy compute, summed over tasks: {compute}" if compute else ""))
    print(f"outputs: {summary.output} (this run: {summary.run_dir})")
    print("\n" + "\n".join(answer.lines))  # again, last: the lines above scroll the first one off a small terminal


def cmd_score(args: argparse.Namespace) -> None:
    from synque_ray.api import score

    run = score(args.config, fresh=args.fresh, quiet=args.quiet)
    _print_run(run, args.quiet)
    if not args.quiet:
        print(f"report: {run.output.rstrip('/')}/{REPORT_FILE}")
    if run.failed:
        print(f"error: {len(run.failed)} candidate(s) failed; re-run to retry them", file=sys.stderr)
        raise SystemExit(1)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from synque_ray.api import Run
    from synque_ray.evaluate import report_text

    run = Run(args.run_dir)  # opened lazily: the first file the evaluation lacks is the one named
    print(report_text(run.evaluate(args.performance, args.id_column, args.metric, args.top_k, report=False)))
    if not args.quiet:
        print(f"written: {args.run_dir.rstrip('/')}/{EVALUATION_FILE}")
    _print_report(run.write_report(), args.quiet)  # it gains the evaluation


def _print_report(written: str, quiet: bool) -> None:
    if not quiet:
        print(f"report: {written}")


def cmd_report(args: argparse.Namespace) -> None:
    from synque_ray.api import Run

    _print_report(Run(args.run_dir).write_report(args.out), args.quiet)


def cmd_select(args: argparse.Namespace) -> None:
    from synque_ray.api import Run
    from synque_ray.selection import choice_line

    result = Run(args.run_dir).select(args.by, args.top, args.out, args.drop_rows or (), dedupe=args.dedupe,
                                      allow_empty=args.allow_empty, overwrite=args.overwrite)
    for chosen in result["chosen"]:
        print(choice_line(chosen, result["by"], args.out))
    print(f"written: {args.out.rstrip('/')}/selection.json")


def cmd_demo(args: argparse.Namespace) -> None:
    from synque_ray.api import score_demo
    from synque_ray.evaluate import report_text

    def said(folder: str, quality: dict[str, float]) -> None:
        if not args.quiet:
            print(f"demo data: {len(quality)} candidates graded by construction under {folder}/")

    run = score_demo(args.config, fresh=args.fresh, quiet=args.quiet, on_data=said)
    _print_run(run, args.quiet)
    assert run.evaluation is not None  # the demo evaluates into its set before publishing it
    print("\nagreement with the known quality order:")
    print(report_text(run.evaluation))
    if not args.quiet:
        print(f"report: {run.output.rstrip('/')}/{REPORT_FILE}")


def cmd_explain(args: argparse.Namespace) -> None:
    from synque_ray.api import explain

    print(explain())


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("synque-ray")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        from synque_ray import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synque", description="Rank synthetic datasets by proxy metrics on Ray.",
                                     epilog="`synque explain` says what every proxy and column means.")
    parser.add_argument("--version", action="version", version=f"synque {_version()}",
                        help="print the package version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true",
                       help="print the tables only (no verdict, progress, counts or paths); errors still print")

    score = commands.add_parser("score", help="run a job config", parents=[quiet])
    score.add_argument("config", help="the job's YAML config")
    score.add_argument("--fresh", action="store_true", help="recompute everything, ignoring committed results")
    score.set_defaults(handler=cmd_score)

    evaluate = commands.add_parser("evaluate", help="correlate a run's scores with known performance",
                                   parents=[quiet])
    evaluate.add_argument("run_dir", help="a run's output folder (the config's output:)")
    evaluate.add_argument("--performance", required=True, help="CSV of measured performance")
    evaluate.add_argument("--id-column", required=True, help="the CSV column holding dataset ids")
    evaluate.add_argument("--metric", required=True, help="the CSV column holding the performance")
    evaluate.add_argument("--top-k", type=int, default=3,
                          help="how many best-scored candidates the top-k performance averages (default 3)")
    evaluate.set_defaults(handler=cmd_evaluate)

    report = commands.add_parser("report", help="write a run's self-contained HTML report", parents=[quiet])
    report.add_argument("run_dir", help="a run's output folder (the config's output:)")
    report.add_argument("--out", help="the HTML file to write (default RUN_DIR/report.html); a path or a URI")
    report.set_defaults(handler=cmd_report)

    select = commands.add_parser("select", help="copy a run's best candidates, optionally without flagged rows")
    select.add_argument("run_dir", help="a run's output folder (the config's output:)")
    select.add_argument("--by", required=True, help="the proxy to rank by (e.g. ensemble)")
    select.add_argument("--top", required=True, type=int, help="how many candidates to take")
    select.add_argument("--out", required=True,
                        help="a new or empty folder to write them to (or an earlier selection's, with --overwrite)")
    select.add_argument("--drop-rows", action="append", metavar="RULE",
                        help="SIGNAL>VALUE (or >=, <, <=) over row_scores.parquet, or a yes/no SIGNAL alone "
                        "(copies_real): drop a row flagged under any seed; may be given several times")
    select.add_argument("--dedupe", action="store_true",
                        help="keep one row per near-duplicate group (duplicate_group), after the --drop-rows rules")
    select.add_argument("--allow-empty", action="store_true",
                        help="list a candidate the rules leave no row, writing no file for it (default: refuse)")
    select.add_argument("--overwrite", action="store_true",
                        help="replace an earlier selection in --out (only the files its selection.json lists)")
    select.set_defaults(handler=cmd_select)

    demo = commands.add_parser("demo", help="score the embedded demo data on local Ray", parents=[quiet])
    demo.add_argument("--config", default=str(DEMO_CONFIG), help=argparse.SUPPRESS)
    demo.add_argument("--fresh", action="store_true", help="recompute everything, ignoring committed results")
    demo.set_defaults(handler=cmd_demo)

    explain = commands.add_parser("explain", help="say what every proxy, column and finding means")
    explain.set_defaults(handler=cmd_explain)
    return parser


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not raise again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    except BrokenPipeError:  # `synque explain | head`: the reader has what it wanted
        _drop_stdout()
        return 141  # 128 + SIGPIPE, as a shell tool killed by it
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:  # computed, but nothing honest to publish; a re-run resumes
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: committed results are kept; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0
