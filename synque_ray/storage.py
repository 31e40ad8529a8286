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
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from synque_ray.errors import UserError

LOCK = ".lock"  # in an output folder while a run writes to it: {"pid", "host", "started", "token"}


class WriteError(UserError):
    """A file could not be written (no space, no permission, ...): the user's to fix, and named."""


def join_location(location: str, relative: str) -> str:
    """`relative` under a folder given as a path or a URI, before a URI's query string
    ("s3://b/out?endpoint_override=h" + "cache" -> "s3://b/out/cache?endpoint_override=h")."""
    if not relative:
        return location
    base, mark, query = location.partition("?") if "://" in location else (location, "", "")
    return f"{base.rstrip('/')}/{relative}{mark}{query}"


PROBE_CONNECT_S = 5.0  # an S3 endpoint that does not answer within this is reported, not retried


def _probe_filesystem(fs: pafs.FileSystem) -> pafs.FileSystem:
    """The same filesystem for one quick question: S3 with a short connect timeout and a single
    attempt (the default retries take about 6 s to give up on a closed port); others as they are."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    try:
        _, (options,) = fs.__reduce__()  # the options the URI resolved to (region, endpoint, keys)
        return pafs.S3FileSystem(**{**options, "connect_timeout": PROBE_CONNECT_S,
                                    "request_timeout": 2 * PROBE_CONNECT_S,
                                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1)})
    except (TypeError, ValueError):  # another pyarrow's pickling: ask with its own retries
        return fs


def check_reachable(location: str, key: str) -> None:
    """A UserError naming `key` when the URI's filesystem cannot be opened or does not answer a
    question about the folder (no network, an unknown host, no credentials, no such bucket):
    asked before any work, so a run does not embed everything and then fail to write."""
    try:
        fs, root = pafs.FileSystem.from_uri(location)
        _probe_filesystem(fs).get_file_info(root)
    except (OSError, pa.ArrowException) as err:
        why = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(f"{key}: '{location}' cannot be reached ({why}); check the URI, the network and the "
                        "credentials (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws)") from None


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

    def child(self, relative: str) -> Store:
        """The store of a folder under this one."""
        return Store(self.display(relative))

    def display(self, relative: str = "") -> str:
        return join_location(self.location, relative)

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
        """The table, or None when it is missing or unreadable (a crash's leftover).
        Read through `ParquetFile`, not `pq.read_table`, whose dataset layer imports pandas on first
        use (a third of a second on every run, for files that are always single tables)."""
        try:
            with self.fs.open_input_file(self.path(relative)) as handle:
                return pq.ParquetFile(handle).read()
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
        payload = self.read_bytes(relative)
        try:
            return None if payload is None else json.loads(payload.decode("utf-8"))
        except ValueError:
            return None

    def delete(self, relative: str) -> None:
        """Remove a file or a folder (with what it holds); nothing when it is absent."""
        info = self.fs.get_file_info(self.path(relative))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(relative))
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self.path(relative))

    def create_exclusive(self, relative: str, payload: bytes) -> bool:
        """Write a new file only if none is there; False when one is. Atomic on a local disk (a
        hard link of a complete temporary file, which fails if the name exists); on an object
        store, where nothing is exclusive, checked first and then written."""
        target = self.path(relative)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not isinstance(self.fs, pafs.LocalFileSystem):
            if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
                return False
            self.write_bytes(relative, payload)
            return True
        temporary = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(payload)
            os.link(temporary, target)
            return True
        except FileExistsError:
            return False
        finally:
            if os.path.lexists(temporary):
                os.unlink(temporary)

    def listing(self, relative: str = "") -> list[tuple[str, bool]] | None:
        """(name, is_folder) of each entry of a folder, sorted; None when the folder does not exist."""
        info = self.fs.get_file_info(self.path(relative))
        if info.type != pafs.FileType.Directory:
            return None
        entries = self.fs.get_file_info(pafs.FileSelector(self.path(relative)))
        return sorted((e.base_name, e.type == pafs.FileType.Directory) for e in entries)


@dataclass
class OutputLock:
    """The lock a run holds on its output folder while it computes and publishes."""

    store: Store
    token: str
    note: str | None = None  # set when a stale lock was taken over

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        held = self.store.read_json(LOCK)
        if isinstance(held, dict) and held.get("token") == self.token:
            self.store.delete(LOCK)


def _holder_is_gone(holder: dict) -> bool:
    """A lock of a process of this host that no longer runs (another host's cannot be checked)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def lock_output(store: Store) -> OutputLock:
    """Take the output folder's lock, or a UserError naming who holds it. A lock left by a process of
    this host that is gone (a killed run) is taken over, with a note saying so."""
    token = uuid.uuid4().hex
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "token": token}
    note = None
    for _ in range(3):
        try:
            taken = store.create_exclusive(LOCK, json.dumps(mine).encode("utf-8"))
        except OSError as err:
            raise UserError(f"{store.display()}: cannot write to the output folder ({str(err).splitlines()[0]})"
                            ) from None
        if taken:
            return OutputLock(store, token, note)
        holder = store.read_json(LOCK)
        if not isinstance(holder, dict):
            holder = {}  # being written this instant, or damaged: treated as held
        if _holder_is_gone(holder):
            note = (f"took over the stale lock {store.display(LOCK)}: pid {holder['pid']} on {holder['host']} "
                    f"(since {holder.get('started', '?')}) is no longer running")
            store.delete(LOCK)
            continue
        raise UserError(f"{store.display()}: another run is writing to this output (pid {holder.get('pid', '?')} "
                        f"on {holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it to end, or "
                        f"delete {store.display(LOCK)} if that run is gone")
    raise UserError(f"{store.display(LOCK)}: could not take the output's lock; try again")
