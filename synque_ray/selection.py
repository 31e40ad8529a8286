"""`synque select`: copy a run's best candidates, optionally without their flagged rows.

Everything is checked and read before the first byte is written, so bad input leaves
nothing behind. Each chosen candidate is written in its own format (same file type, same
fields; .jsonl lines are copied verbatim, Parquet keeps its schema), and `selection.json`
says what was chosen, by what, and which rows each rule dropped.

Rules read row_scores.parquet. `SIGNAL>VALUE` (or `>=`, `<`, `<=`) drops a row whose
signal is beyond VALUE under ANY seed that scored it; a yes/no signal is named alone
(`copies_real`) and drops a row where it is true under any seed. A row that no seed
scored (a subsampled run) or whose signal is missing is kept. `--dedupe` runs after the
rules: of each near-duplicate group it keeps the first row the rules left (so a group is
never emptied by it). A rule set that leaves a chosen candidate no row is refused; with
`--allow-empty` that candidate is listed but no file is written (an empty candidate file
is never written: `synque score` would refuse it).

`selection.json` is written first with `"complete": false` and the names of every file
the selection may write (beside those an earlier selection wrote), and again last with
`"complete": true`: at any moment it lists every file a selection put in the folder, which
is what `--overwrite` removes, and nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from synque_ray.errors import UserError
from synque_ray.rowschema import ROW_SIGNALS, RULE_SIGNALS
from synque_ray.runfiles import CandidateFile, candidate_paths, published, read_candidate, run_info, run_table
from synque_ray.storage import Store
from synque_ray.vocabulary import RANKINGS_FILE, ROW_SCORES_FILE

RECORD = "selection.json"
GROUP = "duplicate_group"
DEDUPE = "dedupe"  # the name --dedupe goes by in counts and selection.json
# Two-character operators first, so that ">=" is never read as ">" followed by "=...".
OPERATORS: dict[str, Callable] = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(" + "|".join(OPERATORS) + r")\s*(" + _NUMBER + r"))?\s*$")
_FORMS = "SIGNAL>VALUE, SIGNAL>=VALUE, SIGNAL<VALUE, SIGNAL<=VALUE or a yes/no SIGNAL alone, e.g. p_synthetic>0.9"


@dataclass(frozen=True)
class DropRule:
    """One `--drop-rows` rule; `op` None is a yes/no signal named alone (drop where true)."""

    signal: str
    op: str | None = None
    value: float | None = None

    @property
    def text(self) -> str:
        return self.signal if self.op is None else f"{self.signal}{self.op}{self.value:g}"

    def describe(self) -> str:
        what = "is true" if self.op is None else f"is {_WORDS[self.op]} {self.value:g}"
        return (f"a row is dropped when its {self.signal} {what} under any seed that scored it; "
                "rows without that signal are kept")

    def flagged(self, rows: pl.DataFrame) -> set[int]:
        """Row indices the rule drops (rows of one candidate, every seed)."""
        column = pl.col(self.signal)
        hit = column if self.op is None else OPERATORS[self.op](column, self.value)
        return set(rows.filter(hit.fill_null(False)).get_column("row_index").to_list())

    def as_json(self) -> dict:
        return {"rule": self.text, "signal": self.signal, "op": self.op, "value": self.value,
                "meaning": self.describe()}


def parse_drop_rule(text: str) -> DropRule:
    match = _RULE.match(text)
    if match is None:
        raise UserError(f"--drop-rows {text!r}: expected {_FORMS}")
    signal, op, value = match.groups()
    return DropRule(signal, op, None if value is None else float(value))


def duplicates_beyond_first(rows: pl.DataFrame, dropped: set[int]) -> set[int]:
    """Rows `--dedupe` drops: in each near-duplicate group (`duplicate_group` >= 0), every row
    but the smallest index that `dropped` (the rules' rows) leaves."""
    grouped = rows.filter(pl.col(GROUP).fill_null(-1) >= 0).select("row_index", GROUP).unique()
    grouped = grouped.filter(~pl.col("row_index").is_in(sorted(dropped)))
    first = grouped.group_by(GROUP).agg(pl.col("row_index").min().alias("first"))
    extra = grouped.join(first, on=GROUP).filter(pl.col("row_index") != pl.col("first"))
    return set(extra.get_column("row_index").to_list())


@dataclass(frozen=True)
class Rules:
    """What to drop: the `--drop-rows` rules in order, then `--dedupe`."""

    drop: tuple[DropRule, ...] = ()
    dedupe: bool = False

    def __bool__(self) -> bool:
        return bool(self.drop) or self.dedupe

    def dropped_by(self, rows: pl.DataFrame) -> dict[str, list[int]]:
        """Per rule (by its text; --dedupe last as "dedupe"), the row indices it drops that no
        earlier rule dropped: the counts add up to the rows dropped in all."""
        dropped: set[int] = set()
        by: dict[str, list[int]] = {}
        for rule in self.drop:
            new = rule.flagged(rows) - dropped
            by[rule.text] = sorted(set(by.get(rule.text, ())) | new)  # a rule given twice counts once
            dropped |= new
        if self.dedupe:
            by[DEDUPE] = sorted(duplicates_beyond_first(rows, dropped))
        return by


@dataclass
class Choice:
    """One chosen candidate: where it comes from, its ranking, the rows each rule drops."""

    file: CandidateFile
    ranking: dict
    dropped_by: dict[str, list[int]] = field(default_factory=dict)

    @property
    def dropped(self) -> list[int]:
        return sorted({i for rows in self.dropped_by.values() for i in rows})

    def kept(self) -> list[int]:
        dropped = set(self.dropped)
        return [i for i in range(len(self.file.texts)) if i not in dropped]


def _chosen_rankings(rankings: pl.DataFrame, by: str, top: int, where: str) -> list[dict]:
    proxies = sorted(rankings.get_column("proxy").unique().to_list())
    if by not in proxies:
        raise UserError(f"--by {by}: no such proxy in {where} (proxies: {', '.join(proxies)})")
    ranked = rankings.filter(pl.col("proxy") == by).sort(["rank", "dataset_id"])
    if top < 1 or top > ranked.height:
        raise UserError(f"--top {top}: must be between 1 and the {ranked.height} candidates ranked by {by}")
    return ranked.head(top).to_dicts()


def _check_rules(rules: Rules, rows: pl.DataFrame | None, where: str) -> pl.DataFrame:
    """The row scores, once each rule names a column of them of the right kind: a number with a
    threshold, a yes/no signal alone; duplicate_group only through --dedupe."""
    if rows is None:
        raise UserError(f"{where}: not found; this run has no row scores to drop rows by (re-run `synque score`)")
    kinds = {c: ROW_SIGNALS[c].dtype == pl.Boolean for c in rows.columns if c in RULE_SIGNALS}
    for rule in rules.drop:
        if rule.signal == GROUP:
            raise UserError(f"--drop-rows {rule.text!r}: {GROUP} is a group id, not a signal; "
                            "use --dedupe to keep one row per near-duplicate group")
        if rule.signal not in kinds:
            raise UserError(f"--drop-rows: unknown signal '{rule.signal}' ({where} has: {', '.join(kinds)})")
        if kinds[rule.signal] and rule.op is not None:
            raise UserError(f"--drop-rows {rule.text!r}: {rule.signal} is yes/no; name it alone "
                            f"(--drop-rows {rule.signal}) to drop the rows where it is true")
        if not kinds[rule.signal] and rule.op is None:
            raise UserError(f"--drop-rows {rule.text!r}: {rule.signal} is a number; give a threshold, "
                            f"e.g. '{rule.signal}>X' (or >=, <, <=)")
    if rules.dedupe and GROUP not in rows.columns:
        raise UserError(f"--dedupe: {where} has no {GROUP} column (re-run `synque score`)")
    return rows


def _check_empty(choices: list[Choice], allow_empty: bool) -> None:
    for choice in choices:
        if not choice.kept() and not allow_empty:
            counts = ", ".join(f"{rule}: {len(rows)}" for rule, rows in choice.dropped_by.items())
            raise UserError(f"{choice.file.dataset_id}: the rules drop all {len(choice.file.texts)} of its rows "
                            f"({counts}); loosen them, or pass --allow-empty to skip such a candidate")


def plan(run_dir: str, by: str, top: int, rules: Rules, allow_empty: bool = False) -> list[Choice]:
    """Check every input and read every chosen file; nothing is written here."""
    run = published(run_dir)  # the set LATEST names: never two runs' tables mixed
    info = run_info(run)
    ranked = _chosen_rankings(run_table(run, RANKINGS_FILE), by, top, run.display(RANKINGS_FILE))
    rows = None
    if rules:
        rows = _check_rules(rules, run_table(run, ROW_SCORES_FILE, required=False),
                            run.display(ROW_SCORES_FILE))
    paths = candidate_paths(info)
    choices = []
    for entry in ranked:
        dataset_id = entry["dataset_id"]
        if dataset_id not in paths:
            raise UserError(f"{dataset_id}: no file for it under {info['config']['candidates']['path']} any more")
        file = read_candidate(info, dataset_id, paths[dataset_id])
        if file.changed:
            raise UserError(file.change_message())
        choice = Choice(file, entry)
        if rows is not None:  # there are rules
            choice.dropped_by = rules.dropped_by(rows.filter(pl.col("dataset_id") == dataset_id))
        choices.append(choice)
    _check_empty(choices, allow_empty)
    return choices


def _earlier_files(target: Store, out: str) -> set[str]:
    """The files an earlier selection wrote in `out`, from its selection.json."""
    record = target.read_json(RECORD)
    if not isinstance(record, dict) or not isinstance(record.get("chosen"), list):
        raise UserError(f"{out}: holds files but no readable {RECORD}; --overwrite only replaces an earlier "
                        "`synque select` output (remove the folder yourself)")
    names = record.get("files")
    if names is None:  # written before selection.json listed its files: every chosen file was written
        names = [c.get("file") for c in record["chosen"] if isinstance(c, dict) and c.get("file")]
    for name in names:
        if not isinstance(name, str) or name in ("", ".", "..", RECORD) or Path(name).name != name:
            raise UserError(f"{target.display(RECORD)}: lists {name!r}, which is not a file name in that folder; "
                            "it was not written by `synque select`")
    return set(names)


def check_out(out: str, overwrite: bool, new_files: list[str]) -> tuple[Store, set[str]]:
    """The --out folder and the files an earlier selection wrote there (to replace): it must be
    new or empty, or, with `overwrite`, hold an earlier selection whose files are the only ones
    the new one would replace."""
    target = Store(out)
    if target.exists(""):
        raise UserError(f"{out}: is a file; --out takes a folder")
    present = {name for name, _ in target.listing("") or []}
    if not present:
        return target, set()
    if not overwrite:
        raise UserError(f"{out}: exists and is not empty; choose a new --out folder, or pass --overwrite to "
                        "replace the selection there")
    earlier = _earlier_files(target, out)
    for name in new_files:
        if name in present and name not in earlier:
            raise UserError(f"{target.display(name)}: exists and no earlier selection wrote it; "
                            f"--overwrite replaces only the files {RECORD} lists")
    return target, earlier


def subset_bytes(path: Path, keep: list[int], expected: int) -> bytes:
    """The file's rows `keep`, in its own format; `expected` is its row count as the run read it."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.ParquetFile(path).read()
        _same_count(path, table.num_rows, expected)
        buffer = io.BytesIO()
        pq.write_table(table.take(keep), buffer)
        return buffer.getvalue()
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        lines = [line for line in text.split("\n") if line.strip()]  # as reading.py: a string may hold U+2028
        _same_count(path, len(lines), expected)
        return "".join(lines[i] + "\n" for i in keep).encode("utf-8")
    if suffix == ".json":
        records = json.loads(text)
        entries = list(records.items()) if isinstance(records, dict) else records  # an id map keeps its ids
        _same_count(path, len(entries), expected)
        kept = [entries[i] for i in keep]
        return (json.dumps(dict(kept) if isinstance(records, dict) else kept, ensure_ascii=False, indent=1)
                + "\n").encode("utf-8")
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    _same_count(path, len(rows) - 1, expected)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([rows[0], *[rows[i + 1] for i in keep]])
    return out.getvalue().encode("utf-8")


def _same_count(path: Path, found: int, expected: int) -> None:
    if found != expected:
        raise UserError(f"{path}: {found} records but the run read {expected} rows; cannot copy rows by index")


def summary(run_dir: str, by: str, top: int, rules: Rules, allow_empty: bool, choices: list[Choice]) -> dict:
    """selection.json: what was chosen, by what, what each rule dropped from each, which files were written."""
    chosen = [{
        "dataset_id": c.file.dataset_id, "rank": c.ranking["rank"], "rank_low": c.ranking["rank_low"],
        "rank_high": c.ranking["rank_high"], "tied_with_best": c.ranking["tied_with_best"],
        "score_mean": c.ranking["score_mean"], "source": str(c.file.path),
        "file": c.file.path.name if c.kept() else None, "content_hash": c.file.recorded_hash,
        "rows_in": len(c.file.texts), "rows_dropped": len(c.dropped), "rows_out": len(c.kept()),
        "dropped_by": {rule: len(rows) for rule, rows in c.dropped_by.items()},
        "dropped_row_indices": c.dropped,
    } for c in choices]
    return {"run": run_dir, "by": by, "top": top, "drop_rows": [rule.as_json() for rule in rules.drop],
            "dedupe": rules.dedupe, "allow_empty": allow_empty, "chosen": chosen,
            "files": [c["file"] for c in chosen if c["file"]], "complete": True}


def choice_line(chosen: dict, by: str, out: str) -> str:
    """One line per chosen candidate: what was kept, what each rule dropped, where it went."""
    counts = ", ".join(f"{n} by {rule}" for rule, n in chosen["dropped_by"].items())
    head = f"{chosen['dataset_id']}: rank {chosen['rank']} by {by}, "
    if chosen["file"] is None:
        return head + f"all {chosen['rows_in']} rows dropped ({counts}); no file written (--allow-empty)"
    dropped = f" (dropped {counts})" if counts else ""
    kept = f"{chosen['rows_out']} of {chosen['rows_in']} rows kept{dropped}"
    return head + f"{kept} -> {out.rstrip('/')}/{chosen['file']}"


def select(run_dir: str, by: str, top: int, out: str, drop: list[str] | None = None, dedupe: bool = False,
           allow_empty: bool = False, overwrite: bool = False) -> dict:
    """Write the chosen candidates and selection.json under `out`; returns selection.json's content.

    With `overwrite`, an earlier selection in `out` is replaced: its files that the new one
    does not write again are removed; no other file is touched."""
    rules = Rules(tuple(parse_drop_rule(text) for text in drop or []), dedupe)
    choices = plan(run_dir, by, top, rules, allow_empty)
    payloads = [(c.file.path.name, subset_bytes(c.file.path, c.kept(), len(c.file.texts))) for c in choices
                if c.kept()]  # never an empty candidate file
    result = summary(run_dir, by, top, rules, allow_empty, choices)
    target, earlier = check_out(out, overwrite, [name for name, _ in payloads])
    # First the record of every file this selection may leave here, then the files, then the record of what is.
    target.write_json(RECORD, {**result, "complete": False, "files": sorted(earlier | set(result["files"]))})
    for name, payload in payloads:
        target.write_bytes(name, payload)
    for name in sorted(earlier - set(result["files"])):
        if target.exists(name):
            target.fs.delete_file(target.path(name))
    target.write_json(RECORD, result)
    return result
