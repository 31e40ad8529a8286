"""A finished run's files: its run.json and tables, and its candidate files found again.

The report shows a candidate's rows and `synque select` copies them; both join them to
row_scores.parquet by row index. That join is only right while the file still holds the
rows the run scored, so every file is checked against the content hash the run recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from synque_ray.errors import UserError
from synque_ray.reading import content_hash, list_candidates, read_texts
from synque_ray.storage import Store


def run_info(store: Store) -> dict:
    """run.json, or a UserError naming it when the folder is not a finished run."""
    info = store.read_json("run.json")
    if not isinstance(info, dict):
        raise UserError(f"{store.display('run.json')}: not found or unreadable; run `synque score` first")
    return info


def run_table(store: Store, name: str, required: bool = True) -> pl.DataFrame | None:
    """A table of the run; a missing required one is a UserError naming it, an optional one None."""
    table = store.read_table(name)
    if table is None and required:
        raise UserError(f"{store.display(name)}: not found or unreadable; run `synque score` first")
    return None if table is None else pl.from_arrow(table)


@dataclass(frozen=True)
class CandidateFile:
    """One candidate's file as it is now, beside the hash its run recorded."""

    dataset_id: str
    path: Path
    texts: list[str]
    recorded_hash: str | None

    @property
    def changed(self) -> bool:
        return self.recorded_hash != content_hash(self.texts)

    def change_message(self) -> str:
        return (f"{self.path}: changed since the run (content hash {content_hash(self.texts)}, the run scored "
                f"{self.recorded_hash}); re-run `synque score` first")


def candidate_paths(run_info: dict) -> dict[str, Path]:
    """Candidate id → file, from the run's `candidates.path` (a relative path is read from the
    current folder, as the run itself read it)."""
    location = run_info.get("config", {}).get("candidates", {}).get("path")
    if not location:
        raise UserError("run.json: no config.candidates.path; it was not written by `synque score`")
    return dict(list_candidates(location))


def read_candidate(run_info: dict, dataset_id: str, path: Path) -> CandidateFile:
    """The candidate's texts as the run's config extracts them, and the hash the run recorded."""
    spec = run_info["config"]["candidates"]["text"]
    recorded = run_info.get("content_hashes", {}).get("candidates", {}).get(dataset_id)
    return CandidateFile(dataset_id, path, read_texts(path, spec), recorded)
