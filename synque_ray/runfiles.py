"""A finished run's files: its run.json and tables, and its candidate files found again.

Published sets: a run writes its outputs under `runs/<stamp>/`, and publishing makes that
folder the one the top level shows, in one atomic step at every kill point.

- On a local folder the pointer is the symlink `current -> runs/<stamp>`, and each top-level
  set file (`rankings.parquet`, ...) is a symlink `current/<name>`. Switching `current` is one
  rename, so every top-level name resolves into one set: before the switch all into the old
  one, after it all into the new one (a name the resolved set lacks dangles, i.e. is absent).
  `LATEST` (a file holding the stamp) is written after the switch for people and tools.
- On an object store, where there are no links, `LATEST` is the pointer (one PUT) and the
  top-level copies are refreshed after it: a kill part-way leaves them mixed until the next
  run, so readers there must follow `LATEST`.

`published(location)` is the folder every `synque` command reads (the location itself for a
run folder, or for outputs written before pointers existed).

The report shows a candidate's rows and `synque select` copies them; both join them to
row_scores.parquet by row index. That join is only right while the file still holds the
rows the run scored, so every file is checked against the content hash the run recorded.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs

from synque_ray.errors import UserError
from synque_ray.reading import content_hash, list_candidates, read_texts
from synque_ray.storage import Store, WriteError
from synque_ray.vocabulary import RUN_FILE, SET_FILES


POINTER = "LATEST"
CURRENT = "current"  # on a local folder: the symlink to runs/<stamp> that the top-level set files go through


def _valid_stamp(stamp: str) -> str | None:
    return None if not stamp or "/" in stamp or stamp in (".", "..") else stamp


def _is_local(root: Store) -> bool:
    return isinstance(root.fs, pafs.LocalFileSystem)


def linked_stamp(root: Store) -> str | None:
    """The stamp `current` links to (a local folder published by this version), else None."""
    if not _is_local(root):
        return None
    try:
        target = os.readlink(root.path(CURRENT))
    except OSError:
        return None
    folder, _, stamp = target.rstrip("/").partition("/")
    return _valid_stamp(stamp) if folder == "runs" else None


def latest_stamp(root: Store) -> str | None:
    """The published stamp: where `current` links to on a local folder (the switch itself), else
    the one `LATEST` names; None where there is no pointer."""
    linked = linked_stamp(root)
    if linked is not None:
        return linked
    payload = root.read_bytes(POINTER)
    return _valid_stamp(payload.decode("utf-8", "replace").strip() if payload is not None else "")


def published(location: str | Store, stamp: str | None = None) -> Store:
    """The folder holding one run's complete output set: `runs/<stamp>/` for `stamp`, else the one
    `LATEST` names; the location itself when it has no pointer (a run folder, older outputs) or
    when the set it names is not there (the top level copied without `runs/`)."""
    root = location if isinstance(location, Store) else Store(location)
    if stamp is not None:
        return root.child(f"runs/{stamp}")
    stamp = latest_stamp(root)
    return root.child(f"runs/{stamp}") if stamp and root.exists(f"runs/{stamp}/{RUN_FILE}") else root


def copy_if_latest(root: Store, folder: Store, name: str) -> bool:
    """After `name` was written into `folder`: when that is the published set, show it at the top
    level too (a link through `current`, or a copy on an object store). True when it did."""
    latest = latest_stamp(root)
    if latest is None or folder.display() != root.display(f"runs/{latest}"):
        return False
    if linked_stamp(root) is not None:
        if not os.path.islink(root.path(name)):
            _link(root, name, f"{CURRENT}/{name}")
    else:
        refresh_top_level(root, latest, [name])
    return True


def is_set_file(name: str) -> bool:
    """A file that belongs to one run's output set (copied to the top level when it is published)."""
    return name in SET_FILES or (name.startswith("lens_") and name.endswith(".parquet"))


def set_names(root: Store, folder: str) -> list[str]:
    """The set files in `folder` (relative to root; "" for the top level), sorted."""
    return [name for name, is_folder in root.listing(folder) or [] if not is_folder and is_set_file(name)]


def _link(root: Store, name: str, target: str) -> None:
    """Make `name` a symlink to `target` (relative), replacing what is there in one rename."""
    path = root.path(name)
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(target, temporary)
        os.replace(temporary, path)
    except BaseException as err:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        if isinstance(err, OSError):
            raise WriteError(f"cannot write {root.display(name)} ({os.strerror(err.errno) if err.errno else err})"
                             ) from err
        raise


def _left_over(name: str) -> bool:
    """A top-level name only a killed publish leaves: a temporary file or link of a set file,
    `current` or `LATEST`, or a copied `current` moved aside."""
    base, temporary, _ = name.partition(".tmp-")
    return name.startswith(f"{CURRENT}.stale-") or bool(temporary) and (is_set_file(base) or base in (CURRENT, POINTER))


def publish_set(root: Store, stamp: str) -> None:
    """Make `runs/<stamp>/` (complete, report included) the published set, atomically at every kill
    point on a local folder (see the module's docstring; on an object store only `LATEST` is)."""
    if not _is_local(root):
        root.write_text(POINTER, stamp + "\n")
        refresh_top_level(root, stamp)
        return
    stale = []
    for name in os.listdir(root.path("")):  # what a publish killed part-way left (this one holds the lock)
        if _left_over(name) and os.path.islink(root.path(name)):
            os.unlink(root.path(name))  # a link: never followed (one may point at a set)
        elif _left_over(name):
            stale.append(name)
    if os.path.isdir(root.path(CURRENT)) and not os.path.islink(root.path(CURRENT)):
        # A copy of the folder that followed links (shutil.copytree, cp -rL): `current` is a copy of
        # its set and the top-level files are copies. Moved aside in one rename; the copies stand.
        stale.append(f"{CURRENT}.stale-{uuid.uuid4().hex[:8]}")
        os.rename(root.path(CURRENT), root.path(stale[-1]))
    previous = latest_stamp(root)
    if linked_stamp(root) is None and previous not in (None, stamp) and root.exists(f"runs/{previous}/{RUN_FILE}"):
        _link(root, CURRENT, f"runs/{previous}")  # an output published by copies: point at what they show
    for name in stale:
        root.delete(name)
    shown = {name for name in os.listdir(root.path("")) if is_set_file(name)}
    names = set(set_names(root, f"runs/{stamp}"))
    for name in sorted(names | shown):  # each a link through `current`: resolves into the old set still
        if not os.path.islink(root.path(name)):
            _link(root, name, f"{CURRENT}/{name}")
    _link(root, CURRENT, f"runs/{stamp}")  # the switch: every top-level name now resolves into the new set
    root.write_text(POINTER, stamp + "\n")
    for name in sorted(shown - names):  # links the new set leaves dangling (absent either way)
        if os.path.islink(root.path(name)) and not os.path.exists(root.path(name)):
            os.unlink(root.path(name))


def refresh_top_level(root: Store, stamp: str, names: list[str] | None = None) -> None:
    """On an object store: copy the published set's files (or just `names`) to the top level, for
    people and tools that open `output/rankings.parquet`; set files of an older run that this set
    lacks are removed. Only `LATEST` switches atomically there, so a reader that must never see a
    mix reads `published(root)`."""
    folder = f"runs/{stamp}"
    present = set_names(root, folder)
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
    info = store.read_json(RUN_FILE)
    if not isinstance(info, dict):
        raise UserError(f"{store.display(RUN_FILE)}: not found or unreadable; run `synque score` first")
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
