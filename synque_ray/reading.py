"""Reading candidate and real files into lists of texts (docs/storage.md).

Only the text that a proxy sees is kept: labels and other fields are dropped here,
so no proxy can look at them. Every problem is a `UserError` naming file and row.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import numbers
import os
import re
import string
from pathlib import Path

import numpy as np
import pyarrow as pa
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
    hashed (the inputs are pinned for the run, docs/storage.md) and nothing computed from other
    rows is ever stored under this hash.
    """

    def __init__(self, name: str, texts: list[str] | None = None, *, path: Path | None = None,
                 spec: str | None = None):
        self.name = name
        # The texts themselves, or the (file, text spec) to read them from again.
        self._source: list[str] | tuple[Path, str]
        if texts is not None:
            self._source = loaded = texts
        elif path is not None and spec is not None:
            self._source, loaded = (path, spec), read_texts(path, spec)
        else:
            raise TypeError(f"RowSet '{name}': give its texts, or the path and spec to read them from")
        self.content_hash = content_hash(loaded)
        self.size = len(loaded)

    @property
    def texts(self) -> list[str]:
        if isinstance(self._source, list):
            return self._source
        path, spec = self._source
        try:
            texts = read_texts(path, spec)
        except UserError as err:  # deleted or broken since it was hashed
            raise InputChanged(self.name, path, f" ({str(err).removeprefix(f'{path}: ')})") from None
        if len(texts) != self.size or content_hash(texts) != self.content_hash:
            raise InputChanged(self.name, path)
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


def utf8_text(path: Path, raw: bytes, csv_rows: bool = False) -> str:
    """The file's bytes as text (a leading byte-order mark dropped). A byte that is not UTF-8 is
    a UserError naming its line, and for a CSV its data row (quoted newlines counted)."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = f"line {line}"
        row = _csv_row_at(raw.decode("utf-8", errors="replace"), line) if csv_rows else None
        if row is not None:
            where = f"row {row} (line {line})" if row else f"the header (line {line})"
        raise UserError(f"{path}: {where} is not UTF-8 text (byte 0x{raw[err.start]:02x})") from None


def _csv_row_at(text: str, line: int) -> int | None:
    """The data row (1-based; 0 = the header) that holds physical line `line`, counting records
    as pyarrow does: a quoted value may span lines and blank lines are no rows. None when the
    file cannot be parsed that far (the line alone is then named)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    row = -1
    try:
        for record in reader:
            row += bool(record)
            if reader.line_num >= line:
                break
    except csv.Error:
        return None
    return max(row, 0)


class _EntryText(str):
    """A row that is nothing but its text: a string value of a .json object mapping ids to texts."""


class _Repeated:
    """The value of a name given more than once (a CSV header's or a Parquet schema's column, a JSON
    object's key): a row dict holds one value per name, and the readers would keep the last one
    silently, so which is meant is refused when the text spec reads that name."""

    def __init__(self, positions: list[int], kind: str):
        self.positions, self.kind = positions, kind  # 1-based; "column" or "key"


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object (json's `object_pairs_hook`); a key given twice maps to a `_Repeated`."""
    found = dict(pairs)
    if len(found) < len(pairs):
        keys = [key for key, _ in pairs]
        for key in {key for key in keys if keys.count(key) > 1}:
            found[key] = _Repeated([i + 1 for i, other in enumerate(keys) if other == key], "key")
    return found


def _json_rows(path: Path, raw: bytes) -> list:
    """A .json file's rows: its list, or one row per entry of an object mapping ids to texts or
    to objects (an id → text entry becomes an `_EntryText`)."""
    data = json.loads(utf8_text(path, raw), object_pairs_hook=_json_object)
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON list of objects or an object mapping ids to texts or objects")
    rows = []
    for key, value in data.items():
        if isinstance(value, _Repeated):
            raise UserError(f"{path}: entry '{key}' is given {len(value.positions)} times; give each id once")
        if not isinstance(value, (str, dict)):
            raise UserError(f"{path}: entry '{key}' is neither text nor an object (got {_kind(value)}); a .json "
                            "file holds a list of objects or one object mapping ids to texts or objects")
        rows.append(_EntryText(value) if isinstance(value, str) else value)
    return rows


def _jsonl_rows(path: Path, raw: bytes) -> list:
    """One row per non-blank line. Lines end at "\\n" only: JSON strings may hold U+2028 and the
    other characters that `str.splitlines` would also break at."""
    rows = []
    for number, line in enumerate(utf8_text(path, raw).split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line, object_pairs_hook=_json_object))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {number} is not valid JSON") from None
    return rows


def _table_rows(table: pa.Table) -> list[dict]:
    """A table's rows as dicts; a column name given twice maps to a `_Repeated`, not to the last
    column of that name (what `to_pylist` would silently keep)."""
    names = table.column_names
    repeated = {name: [i + 1 for i, other in enumerate(names) if other == name]
                for name in names if names.count(name) > 1}
    if not repeated:
        return table.to_pylist()
    table = table.select([i for i, name in enumerate(names) if name not in repeated])
    return [{**row, **{name: _Repeated(positions, "column") for name, positions in repeated.items()}}
            for row in table.to_pylist()]


def _csv_rows(path: Path, raw: bytes) -> list[dict]:
    """Every column read as text, as written (a text column of digits stays text, "007" keeps its
    zeros); a quoted value may span lines."""
    header = next(csv.reader(io.StringIO(utf8_text(path, raw, csv_rows=True), newline="")), [])
    convert = pa_csv.ConvertOptions(strings_can_be_null=False, column_types={name: pa.string() for name in header})
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    return _table_rows(pa_csv.read_csv(pa.BufferReader(raw), parse_options=parse, convert_options=convert))


def _parquet_rows(path: Path, raw: bytes) -> list[dict]:
    """Read on this thread: with pyarrow's thread pool started (and polars imported), a process that
    ends right after, as on a one-line error, aborted in about half the runs ("terminate called
    without an active exception", exit 134) as that pool was torn down."""
    file = pq.ParquetFile(pa.BufferReader(raw))  # no dataset layer: see Store.read_table
    return _table_rows(file.read(use_threads=False))


_READERS = {".json": _json_rows, ".jsonl": _jsonl_rows, ".parquet": _parquet_rows, ".csv": _csv_rows}


def _read_records(path: Path) -> list:
    """The rows of a candidate or real file, each an object (or an `_EntryText`); a UserError
    names the file and, where it can, the line or row."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise UserError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    try:
        records = _READERS[suffix](path, path.read_bytes())
    except UserError:
        raise
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.__class__.__name__})") from None
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for malformed files
        raise UserError(f"{path}: cannot be read ({str(err).splitlines()[0]})") from None
    if not records:
        raise UserError(f"{path}: file has no rows")
    return records


MAX_FORMAT_WIDTH = 1000  # a template field's width or precision; a row is cut to lens.max_row_tokens anyway
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[a-zA-Z%]?")


def _check_widths(spec: str, field: str, format_spec: str) -> None:
    """A width or precision over MAX_FORMAT_WIDTH is refused: `{t:>99999999999}` would pad every
    row to that many characters (a MemoryError at the first row)."""
    parts = _FORMAT_SPEC.fullmatch(format_spec)
    for name in ("width", "precision"):
        value = parts.group(name) if parts else None
        if value and (len(value) > 6 or int(value) > MAX_FORMAT_WIDTH):  # no int() of 5,000 digits
            raise ValueError(f"template '{spec}': the {name} {value} of field '{field}' is over the "
                             f"{MAX_FORMAT_WIDTH} characters a field may take")


def template_fields(spec: str) -> list[str]:
    """The fields a text spec reads: `[spec]` for a field name; for a template such as
    "{question} {evidence}" the fields it names. A ValueError says why a template is unusable
    (malformed, a positional `{}`, an attribute or item lookup, a nested field)."""
    if "{" not in spec:
        return [spec]
    try:
        parts = list(string.Formatter().parse(spec))
    except ValueError as err:
        raise ValueError(f"template '{spec}' is malformed ({err})") from None
    fields = []
    for _, field, format_spec, conversion in parts:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError(f"template '{spec}' has a positional field '{{{field}}}'; name a field, e.g. '{{text}}'")
        if "." in field or "[" in field or "{" in (format_spec or "") or conversion not in (None, "r", "s", "a"):
            raise ValueError(f"template '{spec}': '{{{field}}}' is not a plain field; write '{{name}}' or "
                             "'{name:format}' with a top-level field name")
        _check_widths(spec, field, format_spec or "")
        fields.append(field)
    if not fields:
        raise ValueError(f"template '{spec}' names no field")
    return fields


def _repeated_line(path: Path, number: int, field: str, value: _Repeated) -> str:
    places = ", ".join(map(str, value.positions))
    if value.kind == "column":  # the header's: every row has it
        return f"{path}: {len(value.positions)} columns are named '{field}' (columns {places}); rename all but one"
    return f"{path}: row {number} gives the key '{field}' {len(value.positions)} times (keys {places}); keep one"


def _field_list(record: dict, most: int = 12) -> str:
    """The record's field names, for a message: the first `most`, then how many more."""
    names = [repr(str(name)) for name in record]
    if not names:
        return "none"
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _unicode(text: str, path: Path, where: str) -> str:
    """`text`, checked to be encodable: a JSON escape such as "\\ud800" yields a lone surrogate,
    which no hash, tokenizer or file can take."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise UserError(f"{path}: {where} holds a lone surrogate ('\\u{ord(text[err.start]):04x}'), "
                            "which is not valid Unicode text") from None
    return text


def _template_value(value: object, path: Path, where: str) -> object:
    """A template's field value: text as is, a number or bool formatted by the template."""
    if isinstance(value, str):
        return _unicode(value, path, where)
    if isinstance(value, numbers.Number):
        return value
    raise UserError(f"{path}: {where} is not text or a number (got {_kind(value)})")


def extract_texts(records: list, spec: str, path: Path) -> list[str]:
    """One text per record. `spec` is a field name (its value must be text) or a template such
    as "{stars} stars: {review}" (text fields as is, numbers and bools formatted, null an error);
    an id → text entry of a .json object is its own text, whatever field name `spec` gives."""
    try:
        fields = template_fields(spec)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    template = "{" in spec
    texts = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, _EntryText):
            if template:
                raise UserError(f"{path}: row {number} is a bare text (an id → text entry), so the template "
                                f"'{spec}' has no fields to fill; give a field name instead")
            texts.append(_unicode(str(record), path, f"row {number}"))
            continue
        if not isinstance(record, dict):
            raise UserError(f"{path}: row {number} is not an object")
        values: dict[str, object] = {}
        for field in fields:
            if field not in record:
                raise UserError(f"{path}: row {number} has no field '{field}' (its fields: {_field_list(record)})")
            where, value = f"row {number} field '{field}'", record[field]
            if isinstance(value, _Repeated):
                raise UserError(_repeated_line(path, number, field, value))
            if template:
                values[field] = _template_value(value, path, where)
            elif isinstance(value, str):
                texts.append(_unicode(value, path, where))  # a field name (the one field): its text is the row's
            else:
                raise UserError(f"{path}: {where} is not text (got {_kind(value)})")
        if not template:
            continue
        try:
            texts.append(spec.format_map(values))
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}: row {number}: template '{spec}' cannot format its fields ({err})") from None
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
