"""A finished run's files: its run.json and tables, and its candidate files found again.

Published sets (SPEC §6): a run writes its outputs under `runs/<stamp>/` and then
switches the pointer file `LATEST` (holding that stamp) in one atomic write; the
top-level copies are refreshed after it. A reader that must never see two runs mixed
follows the pointer: `published(location)` is the folder to read (the location itself
for a run folder, or for outputs written before pointers existed).

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


POINTER = "LATEST"


def latest_stamp(root: Store) -> str | None:
    """The stamp `LATEST` names, or None where there is no pointer."""
    payload = root.read_bytes(POINTER)
    stamp = payload.decode("utf-8", "replace").strip() if payload is not None else ""
    if not stamp or "/" in stamp or stamp in (".", ".."):
        return None
    return stamp


def published(location: str | Store, stamp: str | None = None) -> Store:
    """The folder holding one run's complete output set: `runs/<stamp>/` for `stamp`, else the one
    `LATEST` names; the location itself when it has no pointer (a run folder, older outputs) or
    when the set it names is not there (the top level copied without `runs/`)."""
    root = location if isinstance(location, Store) else Store(location)
    if stamp is not None:
        return root.child(f"runs/{stamp}")
    stamp = latest_stamp(root)
    return root.child(f"runs/{stamp}") if stamp and root.exists(f"runs/{stamp}/run.json") else root


def copy_if_latest(root: Store, folder: Store, name: str) -> bool:
    """After `name` was written into `folder`: when that is the set `LATEST` names, refresh its
    top-level copy too. True when it did."""
    latest = latest_stamp(root)
    if latest is None or folder.display() != root.display(f"runs/{latest}"):
        return False
    refresh_top_level(root, latest, [name])
    return True


def is_set_file(name: str) -> bool:
    """A file that belongs to one run's output set (copied to the top level when it is published)."""
    return name in SET_FILES or (name.startswith("lens_") and name.endswith(".parquet"))


SET_FILES = ("scores.parquet", "rankings.parquet", "row_scores.parquet", "run.json", "report.html",
             "evaluation.json")


def refresh_top_level(root: Store, stamp: str, names: list[str] | None = None) -> None:
    """Copy the published set's files (or just `names`) to the top level, for people and tools that
    open `output/rankings.parquet`; set files of an older run that this set lacks are removed.
    These copies are a convenience: only the pointer switch is atomic, so a reader that must never
    see a mix reads `published(root)`."""
    folder = f"runs/{stamp}"
    present = [name for name, is_folder in root.listing(folder) or [] if not is_folder and is_set_file(name)]
    for name in names if names is not None else present:
        payload = root.read_bytes(f"{folder}/{name}")
        if payload is not None:
            root.write_bytes(name, payload)
    if names is None:
        for name, is_folder in root.listing() or []:
            if not is_folder and is_set_file(name) and name not in present:
                root.delete(name)


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
