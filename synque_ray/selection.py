"""`synque select`: copy a run's best candidates, optionally without their flagged rows.

Everything is checked and read before the first byte is written, so bad input leaves
nothing behind. Each chosen candidate is written in its own format (same file type, same
fields; .jsonl lines are copied verbatim, Parquet keeps its schema), and `selection.json`,
written last, says what was chosen, by what, and which rows were dropped.

The drop rule `SIGNAL>VALUE` (or `SIGNAL<VALUE`) reads row_scores.parquet: a row is
dropped when its signal is beyond VALUE under ANY seed that scored it; a row that no
seed scored (a subsampled run) or whose signal is missing is kept.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from synque_ray.errors import UserError
from synque_ray.runfiles import CandidateFile, candidate_paths, published, read_candidate, run_info, run_table
from synque_ray.storage import Store

ROW_KEYS = ("dataset_id", "seed", "row_index", "text_hash", "duplicate_group")  # not signals to drop by
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class DropRule:
    signal: str
    op: str  # ">" or "<"
    value: float

    def describe(self) -> str:
        beyond = "above" if self.op == ">" else "below"
        return (f"a row is dropped when its {self.signal} is {beyond} {self.value:g} under any seed that scored it; "
                "rows without that signal are kept")

    def flagged(self, rows: pl.DataFrame) -> list[int]:
        """Indices of the rows the rule drops (rows of one candidate, every seed)."""
        column = pl.col(self.signal)
        hit = column > self.value if self.op == ">" else column < self.value
        return sorted(rows.filter(hit.fill_null(False)).get_column("row_index").unique().to_list())


def parse_drop_rule(text: str) -> DropRule:
    match = _RULE.match(text)
    if match is None:
        raise UserError(f"--drop-rows {text!r}: expected SIGNAL>VALUE or SIGNAL<VALUE, e.g. p_synthetic>0.9")
    return DropRule(match.group(1), match.group(2), float(match.group(3)))


@dataclass
class Choice:
    """One chosen candidate: where it comes from, its ranking, the rows it keeps."""

    file: CandidateFile
    ranking: dict
    dropped: list[int] = field(default_factory=list)

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


def _check_out(out: str) -> Store:
    store = Store(out)
    if store.exists(""):
        raise UserError(f"{out}: is a file; --out takes a folder")
    if store.listing(""):
        raise UserError(f"{out}: exists and is not empty; choose a new --out folder")
    return store


def _check_rule(rule: DropRule, rows: pl.DataFrame | None, where: str) -> None:
    if rows is None:
        raise UserError(f"{where}: not found; this run has no row scores to drop rows by (re-run `synque score`)")
    signals = [c for c, t in rows.schema.items() if c not in ROW_KEYS and t.is_numeric()]
    if rule.signal not in signals:
        raise UserError(f"--drop-rows: unknown signal '{rule.signal}' ({where} has: {', '.join(signals)})")


def plan(run_dir: str, by: str, top: int, out: str, drop: str | None) -> tuple[Store, list[Choice], DropRule | None]:
    """Check every input and read every chosen file; nothing is written here."""
    run = published(run_dir)  # the set LATEST names: never two runs' tables mixed
    info = run_info(run)
    ranked = _chosen_rankings(run_table(run, "rankings.parquet"), by, top, run.display("rankings.parquet"))
    rule = parse_drop_rule(drop) if drop is not None else None
    rows = None
    if rule is not None:
        rows = run_table(run, "row_scores.parquet", required=False)
        _check_rule(rule, rows, run.display("row_scores.parquet"))
    target = _check_out(out)
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
        if rule is not None:
            choice.dropped = rule.flagged(rows.filter(pl.col("dataset_id") == dataset_id))
        choices.append(choice)
    return target, choices, rule


def subset_bytes(path: Path, keep: list[int], expected: int) -> bytes:
    """The file's rows `keep`, in its own format; `expected` is its row count as the run read it."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
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
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([rows[0], *[rows[i + 1] for i in keep]])
    return buffer.getvalue().encode("utf-8")


def _same_count(path: Path, found: int, expected: int) -> None:
    if found != expected:
        raise UserError(f"{path}: {found} records but the run read {expected} rows; cannot copy rows by index")


def summary(run_dir: str, by: str, top: int, rule: DropRule | None, choices: list[Choice]) -> dict:
    """selection.json: what was chosen, by what, and what was dropped from each."""
    chosen = [{
        "dataset_id": c.file.dataset_id, "rank": c.ranking["rank"], "rank_low": c.ranking["rank_low"],
        "rank_high": c.ranking["rank_high"], "tied_with_best": c.ranking["tied_with_best"],
        "score_mean": c.ranking["score_mean"], "source": str(c.file.path), "file": c.file.path.name,
        "content_hash": c.file.recorded_hash, "rows_in": len(c.file.texts), "rows_dropped": len(c.dropped),
        "rows_out": len(c.file.texts) - len(c.dropped), "dropped_row_indices": c.dropped,
    } for c in choices]
    rule_json = None if rule is None else {"signal": rule.signal, "op": rule.op, "value": rule.value,
                                           "rule": rule.describe()}
    return {"run": run_dir, "by": by, "top": top, "drop_rows": rule_json, "chosen": chosen}


def select(run_dir: str, by: str, top: int, out: str, drop: str | None = None) -> dict:
    """Write the chosen candidates and selection.json under `out`; returns selection.json's content."""
    target, choices, rule = plan(run_dir, by, top, out, drop)
    payloads = [(c.file.path.name, subset_bytes(c.file.path, c.kept(), len(c.file.texts))) for c in choices]
    for name, payload in payloads:
        target.write_bytes(name, payload)
    result = summary(run_dir, by, top, rule, choices)
    target.write_json("selection.json", result)  # last: its presence marks a complete selection
    return result
