"""Atomic reads and writes under a local path or any pyarrow filesystem URI.

Every file is written to a temporary name beside its target and then renamed, so a
crash leaves either the old file or the new one, never half of one; a write that fails
(disk full, a read-only folder, a folder where the file should be) removes its temporary
file and raises `WriteError`, one line naming the path. Readers treat an unreadable file
as absent, so a leftover from a crash is redone, not trusted.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from synque_ray.errors import UserError


class WriteError(UserError):
    """A file could not be written (no space, no permission, ...): the user's to fix, and named."""


def _reason(err: OSError) -> str:
    """The operating system's words for a failed write ("No space left on device")."""
    if err.errno:
        return os.strerror(err.errno)
    return str(err).splitlines()[0] if str(err) else err.__class__.__name__


class Store:
    def __init__(self, location: str):
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(location).resolve())
        self.location = location
        self.root = self.root.rstrip("/")

    @property
    def uri(self) -> str:
        """The location as any process can open it: an absolute path or the URI."""
        return self.location if "://" in self.location else self.root

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def display(self, relative: str = "") -> str:
        return f"{self.location.rstrip('/')}/{relative}" if relative else self.location

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type == pafs.FileType.File

    def write_bytes(self, relative: str, payload: bytes) -> None:
        """Write through a temporary name and a rename: readers see the old file or the new one.
        On any failure the temporary file is removed; an OSError becomes a `WriteError`."""
        target = self.path(relative)
        temporary = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self._write_file(temporary, payload)
            self.fs.move(temporary, target)
        except BaseException as err:
            self._discard(temporary)
            if isinstance(err, OSError):
                raise WriteError(f"cannot write {self.display(relative)} ({_reason(err)})") from err
            raise

    def _write_file(self, path: str, payload: bytes) -> None:
        with self.fs.open_output_stream(path) as stream:
            stream.write(payload)

    def _discard(self, path: str) -> None:
        """Remove a temporary file if it was created; a failure to do so leaves the first error standing."""
        try:
            self.fs.delete_file(path)
        except OSError:
            pass

    def read_bytes(self, relative: str) -> bytes | None:
        """The file's bytes, or None when it is missing or unreadable."""
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return stream.read()
        except (FileNotFoundError, OSError):
            return None

    def write_table(self, relative: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.write_bytes(relative, buffer.getvalue())

    def read_table(self, relative: str) -> pa.Table | None:
        """The table, or None when it is missing or unreadable (a crash's leftover)."""
        try:
            return pq.read_table(self.path(relative), filesystem=self.fs)
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None

    def row_count(self, relative: str) -> int | None:
        """Rows of a Parquet file from its footer; None when missing or unreadable."""
        try:
            with self.fs.open_input_file(self.path(relative)) as handle:
                return pq.ParquetFile(handle).metadata.num_rows
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None

    def write_json(self, relative: str, data: object) -> None:
        self.write_bytes(relative, json.dumps(data, indent=2, default=str).encode("utf-8"))

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def read_json(self, relative: str) -> object | None:
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return json.loads(stream.read().decode("utf-8"))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def listing(self, relative: str = "") -> list[tuple[str, bool]] | None:
        """(name, is_folder) of each entry of a folder, sorted; None when the folder does not exist."""
        info = self.fs.get_file_info(self.path(relative))
        if info.type != pafs.FileType.Directory:
            return None
        entries = self.fs.get_file_info(pafs.FileSelector(self.path(relative)))
        return sorted((e.base_name, e.type == pafs.FileType.Directory) for e in entries)
