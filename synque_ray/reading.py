"""Reading candidate and real files into lists of texts (SPEC §5, §10).

Only the text that a proxy sees is kept: labels and other fields are dropped here,
so no proxy can look at them. Every problem is a `UserError` naming file and row.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import string
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from synque_ray.errors import UserError

SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


class InputChanged(Exception):
    """A candidate's file no longer holds the rows its content hash was computed from.

    Raised by `RowSet.texts`; a stage fails that candidate for this run (never commits
    anything under the old hash), and the next run hashes the file anew and scores it."""

    def __init__(self, name: str, path: Path, why: str = ""):
        super().__init__(f"{path} changed during the run{why}; re-run to score it")
        self.name, self.path = name, path


class RowSet:
    """A named list of texts, with the content hash that keys its cache entries and results.

    Built from a file, it keeps only its hash and size and re-reads the texts when
    asked, so that the driver's memory does not grow with the number of candidates.
    Every re-read is hashed again and must match: `texts` raises `InputChanged` when the
    file changed since it was hashed, so every stage sees exactly the rows that were
    hashed (the inputs are pinned for the run, SPEC §10b) and nothing computed from other
    rows is ever stored under this hash.
    """

    def __init__(self, name: str, texts: list[str] | None = None, *, path: Path | None = None,
                 spec: str | None = None):
        self.name = name
        self._path, self._spec = path, spec
        loaded = texts if texts is not None else read_texts(path, spec)
        self.content_hash = content_hash(loaded)
        self.size = len(loaded)
        self._texts = texts

    @property
    def texts(self) -> list[str]:
        if self._texts is not None:
            return self._texts
        try:
            texts = read_texts(self._path, self._spec)
        except UserError as err:  # deleted or broken since it was hashed
            raise InputChanged(self.name, self._path, f" ({str(err).removeprefix(f'{self._path}: ')})") from None
        if len(texts) != self.size or content_hash(texts) != self.content_hash:
            raise InputChanged(self.name, self._path)
        return texts

    def __repr__(self) -> str:
        return f"RowSet({self.name!r}, {self.size} rows)"


def content_hash(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:32]


def row_hashes(texts: list[str]) -> list[str]:
    """A short content hash per row: joins row_scores.parquet to the rows of any copy of the file."""
    return [hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] for text in texts]


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list):
                raise UserError(f"{path}: expected a JSON list of objects")
        elif suffix == ".jsonl":
            records = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise UserError(f"{path}: line {number} is not valid JSON") from None
        elif suffix == ".parquet":
            records = pq.read_table(path).to_pylist()
        elif suffix == ".csv":
            options = pa_csv.ConvertOptions(strings_can_be_null=False)
            records = pa_csv.read_csv(path, convert_options=options).to_pylist()
        else:
            raise UserError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    except UserError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err.__class__.__name__})") from None
    except Exception as err:  # pyarrow raises several types for malformed files
        raise UserError(f"{path}: cannot be read ({str(err).splitlines()[0]})") from None
    if not records:
        raise UserError(f"{path}: file has no rows")
    return records


def _template_fields(spec: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(spec) if field]


def extract_texts(records: list[dict], spec: str, path: Path) -> list[str]:
    """`spec` is a field name, or a template such as "{question} {evidence}"."""
    fields = _template_fields(spec) if "{" in spec else [spec]
    texts = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise UserError(f"{path}: row {number} is not an object")
        values = {}
        for field in fields:
            if field not in record:
                raise UserError(f"{path}: row {number} has no field '{field}'")
            value = record[field]
            if not isinstance(value, str):
                kind = "null" if value is None else type(value).__name__
                raise UserError(f"{path}: row {number} field '{field}' is not text (got {kind})")
            values[field] = value
        texts.append(spec.format_map(values) if "{" in spec else values[spec])
    return texts


def read_texts(path: str | Path, spec: str) -> list[str]:
    path = Path(path)
    return extract_texts(_read_records(path), spec, path)


def scan_candidates(location: str) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """(candidate files of a folder or glob, sorted, as (id = file stem, path); every entry that was
    passed over, path -> why). Symlinks are followed wherever they point (users link datasets in);
    what is skipped is said, never dropped silently."""
    base = Path(location)
    skipped: dict[str, str] = {}
    if base.is_dir():
        paths = []
        for entry in sorted(base.iterdir()):
            why = _skip_reason(entry)
            if why is None:
                paths.append(entry)
            else:
                skipped[str(entry)] = why
    elif any(ch in location for ch in "*?["):
        paths = []
        for entry in sorted(Path(p) for p in glob.glob(location)):
            why = _skip_reason(entry, any_suffix=True)
            if why is None:
                paths.append(entry)
            else:
                skipped[str(entry)] = why
    elif base.is_file():
        paths = [base]
    else:
        raise UserError(f"{location}: candidates folder or glob not found")
    if not paths:
        raise UserError(f"{location}: no candidate files ({', '.join(SUFFIXES)})")
    seen: dict[str, Path] = {}
    for path in paths:
        check_id(path.stem, path)
        if path.stem in seen:
            raise UserError(f"duplicate candidate id '{path.stem}': {seen[path.stem]} and {path}")
        seen[path.stem] = path
    return list(seen.items()), skipped


def _skip_reason(entry: Path, any_suffix: bool = False) -> str | None:
    """Why a folder entry is not a candidate file, or None when it is one (a link is followed)."""
    if entry.is_symlink() and not entry.exists():
        return f"dangling symlink (points to {os.readlink(entry)})"
    if entry.is_dir():
        return "a folder, not a file"
    if not entry.is_file():
        return "not a regular file"
    if not any_suffix and entry.suffix.lower() not in SUFFIXES:
        return f"unsupported file type '{entry.suffix}' (use {', '.join(SUFFIXES)})"
    return None


def list_candidates(location: str) -> list[tuple[str, Path]]:
    """Candidate files of a folder or glob, sorted, as (id = file stem, path)."""
    return scan_candidates(location)[0]


def seeded_indices(count: int, size: int | None, seed: int) -> list[int]:
    """Sorted indices of `size` of `count` rows drawn without replacement, the same for the same
    seed on every run; every row when `size` is None or not smaller than `count`."""
    if size is None or size >= count:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size=size, replace=False))


def check_id(dataset_id: str, path: Path) -> None:
    """A candidate id names output files (`rubrics/<id>/`, `<id>.<ext>`): it must be one safe path part."""
    unsafe = (dataset_id in ("", ".", "..") or any(sep in dataset_id for sep in ("/", "\\"))
              or any(ord(ch) < 32 or ord(ch) == 127 for ch in dataset_id))
    if unsafe:
        raise UserError(f"{path}: candidate id {dataset_id!r} (the file name without its suffix) is not a safe "
                        "file name; rename the file")


def sample_pool(pool: list[str], size: int, seed: int, path: str) -> list[str]:
    """U_r for one seed: `size` rows drawn without replacement, reproducibly."""
    if size > len(pool):
        raise UserError(f"{path}: real.sample_size {size} exceeds the pool's {len(pool)} rows")
    return [pool[i] for i in seeded_indices(len(pool), size, seed)]
