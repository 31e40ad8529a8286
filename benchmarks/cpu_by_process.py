"""CPU seconds per process while a command runs, grouped by what the process is.

    python benchmarks/cpu_by_process.py -- make test

Every 0.3 s it reads each process's user + system time from /proc (Linux only); a process
seen first after the sampler started counts from zero, one already running from the time
it had then. Processes that live under 0.3 s are missed. At the end it prints the CPU
seconds per kind of process (Ray worker, Ray daemon, vLLM, pytest, ...), the wall time and
the share of the CPUs left idle (/proc/stat), so that a suite's time can be read as work
(CPU-bound) or waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

KINDS = [  # (substring of the command line, kind); the first match wins
    ("default_worker.py", "Ray worker"), ("setup_worker.py", "Ray worker"), ("ray::", "Ray worker"),
    ("gcs_server", "Ray daemons"), ("raylet", "Ray daemons"), ("dashboard", "Ray daemons"),
    ("log_monitor", "Ray daemons"), ("runtime_env", "Ray daemons"), ("monitor.py", "Ray daemons"),
    ("vllm.entrypoints", "vLLM server"), ("VLLM::", "vLLM server"), ("multiprocessing", "multiprocessing child"),
    ("pytest", "pytest"), ("synque_ray", "synque CLI"), ("chrom", "Chromium"), ("mypy", "mypy"),
]


def _kind(command: str) -> str:
    return next((kind for part, kind in KINDS if part in command), command[:40] or "kernel")


def _cpu_stat() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def _sample(seen: dict, tick: int, started: float) -> None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        cpu, start = (int(fields[11]) + int(fields[12])) / tick, int(fields[19])
        entry = seen.setdefault((pid, start), [command, cpu if start < started else 0.0, cpu])
        entry[2] = max(entry[2], cpu)
        entry[0] = entry[0] or command


def main(command: list[str]) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as handle:
        started = float(handle.read().split()[0]) * tick
    seen: dict = {}
    total0, idle0 = _cpu_stat()
    began = time.monotonic()
    process = subprocess.Popen(command)
    while process.poll() is None:
        _sample(seen, tick, started)
        time.sleep(0.3)
    wall = time.monotonic() - began
    total1, idle1 = _cpu_stat()
    by_kind: Counter = Counter()
    count: Counter = Counter()
    for command_line, first, last in seen.values():
        by_kind[_kind(command_line)] += last - first
        count[_kind(command_line)] += 1
    print(f"exit {process.returncode}; wall {wall:.0f} s; CPUs idle {(idle1 - idle0) / (total1 - total0):.1%}; "
          f"CPU seen {sum(by_kind.values()):.0f} s")
    for kind, seconds in by_kind.most_common(15):
        print(f"{seconds:8.1f} s  {count[kind]:4d} processes  {kind}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[1:] if args[:1] == ["--"] else args)
