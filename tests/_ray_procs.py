"""Helpers for tests that start their own Ray processes (a `ray start` head, a Cluster).

Such a test must never touch another Ray instance on the machine (the suite's own
local `ray.init()`, other sessions' clusters), so:

- everything runs with a private temp dir (`--temp-dir` / `RAY_TMPDIR`), so nothing
  is written to /tmp/ray/ray_current_cluster, where a plain `ray.init()` would find it;
- every port is a free one picked here, never Ray's fixed defaults (10001, 52365, ...);
- the token for token authentication lives in the temp dir (`RAY_AUTH_TOKEN_PATH`),
  not in ~/.ray/auth_token;
- teardown never calls `ray stop` (it stops every Ray on the machine): it kills the
  process tree that the test started, plus any process whose command line names the
  private temp dir, and their descendants — always, also when the test failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Directories a job's working_dir upload leaves out (see cluster/runtime_env.yaml).
RUNTIME_ENV_FILE = REPO / "cluster" / "runtime_env.yaml"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free right now on every interface."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))
            sockets.append(sock)
            port = sock.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def short_temp_dir(prefix: str) -> Path:
    """A temp dir with a short path: Ray's unix socket paths must stay under 107 bytes."""
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


try:  # loaded here, not in the forked child
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Own session (so signals to it reach nothing else), and on Linux a SIGTERM when the
    test process dies, even by SIGKILL: `ray start --block` then stops its processes."""
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def ray_env(temp_dir: Path, token_file: Path) -> dict[str, str]:
    """Environment for every Ray command of one test cluster (head, workers, clients)."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    env.update(
        {
            # The job's `python` is the first one on the head's PATH: make it the venv's.
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            "RAY_TMPDIR": str(temp_dir),
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def new_token_file(folder: Path) -> Path:
    token_file = folder / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    return token_file


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts as exited: its parent may be
    gone and nobody reaps it); return those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = procs
    while True:
        for proc in alive:  # reap our own children
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if proc.ppid() == os.getpid():
                    os.waitpid(proc.pid, os.WNOHANG)
        alive = [proc for proc in alive if _alive(proc)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _collect(roots: list[int], marker: str) -> dict[int, psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            found[pid] = psutil.Process(pid)
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
    for proc in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                found[child.pid] = child
    found.pop(os.getpid(), None)
    return {pid: proc for pid, proc in found.items() if _alive(proc)}


def kill_ray_processes(roots: list[int], marker: str, timeout: float = 1.0) -> list[str]:
    """Stop `roots` (e.g. `ray start --block`), every process naming `marker` on its
    command line, and all their descendants. The roots get SIGTERM first (`ray start
    --block` then stops its own processes); everything left gets SIGTERM, then SIGKILL
    after `timeout` (a head that has run a job can take more than 10 s to stop
    gracefully; a test cluster need not). Returns the command lines that were SIGKILLed."""
    killed: list[str] = []
    found = _collect(roots, marker)  # before the roots die and their children are orphaned
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            if pid in found:
                found[pid].terminate()
    _wait_gone([found[pid] for pid in roots if pid in found], timeout)
    for _ in range(3):  # a dying raylet may still have spawned a worker: look again
        found.update(_collect([], marker))
        alive = [proc for proc in found.values() if _alive(proc)]
        if not alive:
            break
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        for proc in _wait_gone(alive, timeout):
            with contextlib.suppress(psutil.Error):
                killed.append(" ".join(proc.cmdline())[:120])
                proc.kill()
        _wait_gone(alive, 5)
        found = {}
    return killed


def ray_processes_naming(marker: str) -> list[str]:
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.info["cmdline"] or []):
                left.append(" ".join(proc.info["cmdline"])[:120])
    return left


@dataclass
class Head:
    temp_dir: Path
    token_file: Path
    env: dict[str, str]
    gcs_port: int
    dashboard_port: int
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


def dashboard_get(head: Head, path: str, token: str | None = None) -> int:
    """HTTP status of a GET on the head's dashboard, with `token` as Bearer token if given."""
    request = urllib.request.Request(head.dashboard_url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _wait_for_dashboard(head: Head, deadline: float) -> None:
    """Until the Jobs API answers (with the token) or the deadline passes."""
    token = head.token_file.read_text().strip()
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with {head.process.returncode}:\n{head.log_text()[-4000:]}")
        with contextlib.suppress(OSError):
            if dashboard_get(head, "/api/jobs/", token) == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head's dashboard did not come up:\n{head.log_text()[-4000:]}")


def _start_head(temp_dir: Path, token_file: Path, num_cpus: int, start_timeout: float) -> Head:
    (gcs, dashboard, client, agent_listen, agent_grpc, metrics, runtime_env_agent, node_manager,
     object_manager) = free_ports(9)
    head = Head(temp_dir, token_file, ray_env(temp_dir, token_file), gcs, dashboard, log=temp_dir / "head.log")
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env_agent),
        "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
        "--min-worker-port", "0", "--max-worker-port", "0",
        "--num-cpus", str(num_cpus), "--num-gpus", "0",
        "--object-store-memory", str(300 * 1024 * 1024),
        "--temp-dir", str(temp_dir), "--disable-usage-stats",
    ]
    with open(head.log, "w") as log:
        head.process = subprocess.Popen(
            command, env=head.env, stdout=log, stderr=subprocess.STDOUT, cwd=temp_dir,
            preexec_fn=_die_with_parent,
        )
    try:
        _wait_for_dashboard(head, time.monotonic() + start_timeout)
    except BaseException:
        kill_ray_processes([head.process.pid], str(temp_dir))
        raise
    return head


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, start_timeout: float = 120.0, attempts: int = 2) -> Iterator[Head]:
    """A real `ray start --head` (with the dashboard and Jobs API) on 127.0.0.1, private
    temp dir, free ports, token auth; stopped on exit whatever happened. A start that
    fails (on a loaded machine Ray's raylet start-up budget can run out) is retried."""
    temp_dir = short_temp_dir("rayh")
    head = None
    try:
        token_file = new_token_file(temp_dir)
        for attempt in range(attempts):
            try:
                head = _start_head(temp_dir, token_file, num_cpus, start_timeout)
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        yield head
    finally:
        try:
            kill_ray_processes([head.process.pid] if head is not None else [], str(temp_dir))
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


def run_isolated(script: str, args: list[str], temp_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run a Python driver script in its own session with a private Ray temp dir, and kill
    whatever Ray processes it leaves behind (also after a timeout)."""
    token_file = new_token_file(temp_dir)
    env = ray_env(temp_dir, token_file)
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    log = temp_dir / "driver.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", script, *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            preexec_fn=_die_with_parent,
        )
    try:
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = -9
        return subprocess.CompletedProcess(process.args, returncode, log.read_text(errors="replace"), "")
    finally:
        kill_ray_processes([process.pid], str(temp_dir))
