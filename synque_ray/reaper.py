"""Ends what a driver's local Ray started once that driver is gone, however it died.

Ray ties its GCS and raylet to the driver that starts them (the kernel kills them with
it), but not what the raylet starts in turn: after `kill -9` of a driver, its dashboard
agent and runtime-env agent were still running 30 s later, holding memory and ports.
Ray's own reaper only runs where the kernel cannot fate-share, and cannot survive SIGKILL
of its group.

So before starting a local cluster the driver starts this module as a small watcher in a
session of its own (a signal to the driver's process group does not reach it), and marks
its own environment with a token (`MARKER_ENV`) that Ray's workers inherit. Once a second
(every 5 s after the first 30) the watcher notes the processes below the driver (their
pid and start time, read down the driver's tree in /proc); when the driver exits (a pidfd
wakes it) it SIGKILLs every noted process that is still the same one, what is below those,
and every process carrying the token, until a round finds none. On a normal exit
`ray.shutdown` has already stopped them, and the sweep finds nothing or a straggler.

Linux only (it reads /proc); elsewhere nothing is started. Run as a script, it imports
only the standard library, so it needs neither the package on its path nor Ray.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid

MARKER_ENV = "SYNQUE_RAY_OWNER"
SWEEPS = 40  # rounds of killing, _PAUSE apart: a raylet dying may still fork a worker
_PAUSE = 0.25
_watchers: list[subprocess.Popen] = []  # kept so that the handle is not collected while it runs


def start_watcher() -> str | None:
    """Mark this process's environment (for the Ray processes started after this call) and start
    the watcher that ends them when this process dies. Returns the token; None off Linux."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return None
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # this driver's own, never one it inherited
    os.environ[MARKER_ENV] = token
    env = {key: value for key, value in os.environ.items() if key != MARKER_ENV}  # never itself a target
    _watchers.append(subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid()), token], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True))
    return token


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live, non-zombie process; None otherwise."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return None if fields[0] in (b"Z", b"X") else (int(fields[1]), int(fields[19]))


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every live process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time of every process below `roots` in `table` (roots themselves left out)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and child not in roots:
                found[child] = table[child][1]
                stack.append(child)
    return found


def below(pid: int) -> dict[int, int] | None:
    """pid -> start time of every process below `pid`, read down the tree from each thread's
    /proc/<pid>/task/<tid>/children (only the tree's own files, not every process's); None where
    the kernel has no such files."""
    found: dict[int, int] = {}
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            threads = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue  # gone
        for thread in threads:
            try:
                with open(f"/proc/{current}/task/{thread}/children", "rb") as handle:
                    children = [int(child) for child in handle.read().split()]
            except FileNotFoundError:
                if current == pid and not os.path.exists(f"/proc/{current}/task/{thread}/children"):
                    return None
                continue
            except OSError:
                continue
            for child in children:
                if child not in found and (stat := _stat(child)) is not None:
                    found[child] = stat[1]
                    stack.append(child)
    return found


def marked(token: str) -> list[int]:
    """Processes (other than this one) whose environment holds MARKER_ENV=token. Ray's agents
    rewrite their environment's memory with their process title, so they are found by lineage."""
    needle = f"\0{MARKER_ENV}={token}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in b"\0" + handle.read():
                    found.append(int(entry))
        except OSError:  # gone, or not ours to read
            continue
    return found


def watch(pid: int, tracked: dict[int, int], interval: float = 1.0, settled: float = 30.0,
          later: float = 5.0) -> None:
    """Until process `pid` exits, note every process below it in `tracked` (pid -> start time) each
    `interval` seconds, and each `later` seconds once `settled` seconds have passed: once the driver
    dies, what its raylet started is orphaned, its lineage lost. A look costs 15-20 ms of CPU on a
    loaded machine (BENCHMARKS.md); Ray's agents start with the cluster, and the workers that come
    later carry the driver's token, so the slower pace after the start loses nothing."""
    started = time.monotonic()
    try:
        handle: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (old kernel): look each interval
        handle = None
    try:
        while True:
            tree = below(pid)
            if tree is None:  # no children files: the whole process table
                table = processes()
                if handle is None and pid not in table:
                    return
                tree = descendants({pid}, table)
            elif handle is None and _stat(pid) is None:
                return
            tracked.update(tree)
            pause = interval if time.monotonic() - started < settled else later
            if handle is not None and select.select([handle], [], [], pause)[0]:
                return  # readable: the process exited
            if handle is None:
                time.sleep(pause)
    finally:
        if handle is not None:
            os.close(handle)


def sweep(tracked: dict[int, int], token: str, rounds: int = SWEEPS) -> int:
    """SIGKILL every tracked process that is still the one noted (same start time), everything
    below those and every marked process, again until a round finds none; returns how many."""
    killed: set[int] = set()
    for _ in range(rounds):
        table = processes()
        alive = {p for p, start in tracked.items() if p in table and table[p][1] == start}
        below = descendants(alive, table)
        tracked.update(below)
        targets = (alive | set(below) | set(marked(token))) - {os.getpid()}
        if not targets:
            break
        for target in targets:
            try:
                os.kill(target, signal.SIGKILL)
                killed.add(target)
            except OSError:
                pass
        time.sleep(_PAUSE)
    return len(killed)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver is not for the watcher
    pid, token = int(argv[0]), argv[1]
    tracked: dict[int, int] = {}
    watch(pid, tracked)
    sweep(tracked, token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
