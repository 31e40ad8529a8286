"""The watcher that ends a killed driver's Ray processes, on plain processes (no Ray): a tree
shaped like a local cluster's (a "raylet" below the driver, an "agent" below it with an empty
environment, as Ray's agents leave theirs), the driver killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from synque_ray import reaper

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watcher reads /proc")

SLEEP = "import time; time.sleep(120)"
DRIVER = f"""
import subprocess, sys, time
sys.path.insert(0, {str(REPO)!r})
from synque_ray.reaper import start_watcher
start_watcher()
raylet = ("import subprocess, sys, time; "
          "subprocess.Popen([sys.executable, '-c', {SLEEP!r}], env={{}}, start_new_session=True); time.sleep(120)")
subprocess.Popen([sys.executable, "-c", raylet])
print("ready", flush=True)
time.sleep(120)
"""


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_every_process_below_a_killed_driver_is_gone_within_seconds():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    below: list[psutil.Process] = []
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 20
        while len(below) < 3 and time.monotonic() < deadline:  # watcher, "raylet", "agent"
            below = psutil.Process(driver.pid).children(recursive=True)
            time.sleep(0.1)
        assert len(below) == 3
        time.sleep(2.5)  # the watcher notes the tree once a second
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its group and session are left alone
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p.pid for p in below if _alive(p)]
    finally:
        driver.kill()
        for proc in below:
            if _alive(proc):
                proc.kill()


def test_marked_finds_exactly_the_processes_carrying_the_token():
    token = f"test-{os.getpid()}"
    env = {**os.environ, reaper.MARKER_ENV: token}
    carrying = subprocess.Popen([sys.executable, "-c", SLEEP], env=env)
    other = subprocess.Popen([sys.executable, "-c", SLEEP], env={**env, reaper.MARKER_ENV: token + "x"})
    try:
        deadline = time.monotonic() + 10
        while carrying.pid not in reaper.marked(token) and time.monotonic() < deadline:
            time.sleep(0.05)  # until exec has replaced the environment
        assert reaper.marked(token) == [carrying.pid]
        assert reaper.sweep({}, token) == 1 and carrying.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        carrying.kill()
        other.kill()
        carrying.wait()
        other.wait()
