"""Ray at the bottom: every call into Ray's own plumbing that more than one stage needs.

Joining or starting the cluster (`ensure_ray`), running a Ray Data actor pool
(`map_actor_pool`) and keeping Ray core's restart notice off the terminal
(`without_restart_notice`). It imports nothing of synque_ray but the standard-library
leaf `reaper`, so the embedding model,
LENS's engine and the stages all build on it without an import that runs back up;
Ray itself is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
from collections.abc import Iterator

DASHBOARD_ENV = "SYNQUE_RAY_DASHBOARD"  # "1": a local cluster starts with Ray's dashboard


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (set inside a Ray job), else start a local one.

    Called only by a stage with something to compute, so that a re-run whose every result is
    reused never starts Ray. A local cluster starts without the dashboard (seconds of start-up
    and a web server nobody asked for) unless SYNQUE_RAY_DASHBOARD=1. It is always a new one
    (`address="local"`): Ray's default would first look for a cluster that `ray start` left on
    this machine, and join it, or wait on it when its processes are dead. What it starts ends
    with this process, also after `kill -9` (`synque_ray.reaper`)."""
    address = os.environ.get("RAY_ADDRESS")
    if not address and "ray" not in sys.modules:
        # A local cluster keeps Ray's default token authentication; saying so is what stops Ray
        # warning about it on every start. Ray reads the mode once, at import: set after that,
        # the cluster it starts would expect a token its own driver does not send.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:
        from synque_ray.reaper import start_watcher

        start_watcher()  # before the first Ray process: a kill during the start is covered too
        ray.init(address="local", include_dashboard=os.environ.get(DASHBOARD_ENV) == "1", logging_level="WARNING",
                 log_to_driver=False)


# Ray core's notice, logged at error level on the driver's stderr (once per process), when it
# creates a restartable actor whose constructor arguments are object references. Ray Data
# creates every actor-pool actor that way (see map_actor_pool), so a healthy run printed it.
RESTART_NOTICE = re.compile(
    rb"\[\d{4}-[^\]\n]*\] core_worker\.cc:\d+: Actor [^\n]*has constructor arguments in the object store and "
    rb"max_restarts > 0[^\n]*\n?")
_LOG_START = re.compile(rb"\[\d{4}-")  # how a line of Ray's C++ log begins: "[2026-12-01 10:00:00,000 E ..."
_HOLD_SECONDS = 0.1  # a held-back partial line is written after this long without more output


def _forward(source: int, target: int, stop: threading.Event) -> None:
    """Copy bytes from `source` to `target` as they come, minus RESTART_NOTICE lines.

    Everything else passes at once, progress bars' carriage returns included; only a
    trailing partial line that starts like a Ray log line is held back (at most
    _HOLD_SECONDS) so that the notice is seen whole before it is dropped.
    """
    held = b""
    while True:
        ready, _, _ = select.select([source], [], [], _HOLD_SECONDS)
        chunk = os.read(source, 65536) if ready else b""
        if ready and not chunk:  # every writer is gone
            break
        held = RESTART_NOTICE.sub(b"", held + chunk)
        start = max(held.rfind(b"\n"), held.rfind(b"\r")) + 1
        partial = _LOG_START.search(held, start)
        cut = partial.start() if partial and chunk else len(held)
        if cut:
            os.write(target, held[:cut])
            held = held[cut:]
        if stop.is_set() and not ready:
            break
    if held:
        os.write(target, held)


@contextlib.contextmanager
def without_restart_notice() -> Iterator[None]:
    """Route this process's stderr (fd 2) through a filter that drops Ray core's restart notice.

    Why not remove the cause: Ray Data passes its context to each pool actor by reference
    and makes the actors restartable; the restarts are the pool's fault tolerance (a killed
    embedding actor is rebuilt, its batches retried: tests/cluster/test_fault_tolerance.py), and
    Ray 2.60 logs the notice for every such actor. The notice still reaches the driver's
    log under the Ray session's logs/ (python-core-driver-*.log); every other line, error
    or not, passes through unchanged. Scoped to the stage's run, so that a traceback
    printed after it goes straight to the terminal.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    stop = threading.Event()
    forwarder = threading.Thread(target=_forward, args=(read_end, saved, stop), name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the forwarder drains it and sees its end
        stop.set()
        forwarder.join(timeout=5)
        os.close(read_end)
        os.close(saved)


def map_actor_pool(dataset, actor_class: type, constructor_kwargs: dict, *, actors: int, batch_size: int | None,
                   batch_format: str, num_cpus: float, num_gpus: float = 0):
    """`dataset.map_batches` through a fixed pool of `actors` instances of `actor_class`.

    Only Ray's named remote parameters are used. Ray Data itself makes the pool fault
    tolerant: its actors are created with unbounded restarts and task retries (Ray 2.60,
    `ActorPoolMapOperator._apply_default_remote_args`), so a lost actor is rebuilt and
    its batches run again; Ray 2.60 has no named parameter to bound them. Ray Data hands
    each pool actor its context and its transform by object reference, which is why
    Ray's core worker logs (at error level, once per process) that the actor "has
    constructor arguments in the object store and max_restarts > 0": it is true of every
    restartable Ray Data pool whatever its constructor arguments, and goes only with the
    restarts. Stages run under `without_restart_notice`, which keeps it off the terminal.
    """
    import ray.data

    # Our stages show one bar of their own (in rows or candidates), so Ray Data's bars stay
    # off; its notice that they are off only restates that choice on every first run.
    dataset.context.enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return dataset.map_batches(
        actor_class,
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=batch_size,
        batch_format=batch_format,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
