"""The fast/slow split of tests/conftest.py: what makes a test slow, and the Ray guard of the fast loop."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import FAST_ENV, is_slow

REPO = Path(__file__).resolve().parent.parent


def item(module, fixtures=(), marks=()):
    return SimpleNamespace(path=Path("tests") / module, fixturenames=list(fixtures),
                           own_markers=[getattr(pytest.mark, m).mark for m in marks])


@pytest.mark.parametrize("case, slow", [
    (item("test_proxies.py"), False),
    (item("test_proxies.py", fixtures=["tmp_path"]), False),
    (item("test_report.py", fixtures=["run", "scored_run", "ray_session"]), True),
    (item("test_stages.py", fixtures=["ray_session"]), True),
    (item("test_copies.py", fixtures=["bundled_model_path"]), True),
    (item("test_stages.py", marks=["ray"]), True),
    (item("test_lens_e2e.py"), True),
    (item("test_report_browser.py"), True),
    (item("test_perplexity.py", fixtures=["base", "model_path"]), True),
    (item("test_perplexity.py"), False),
    (item("test_other.py", fixtures=["base"]), False),  # `base` is heavy only in test_perplexity
])
def test_what_makes_a_test_slow(case, slow):
    assert is_slow(case) is slow


def test_the_fast_loop_refuses_to_start_ray(tmp_path):
    """Under SYNQUE_FAST_TESTS=1 a test that starts Ray without being marked fails with the guard's message."""
    (tmp_path / "test_sneaky.py").write_text("import ray\n\ndef test_starts_ray():\n    ray.init(num_cpus=1)\n")
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                           str(tmp_path / "test_sneaky.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, FAST_ENV: "1"})
    assert done.returncode == 1, done.stdout
    assert f"RuntimeError: {FAST_ENV}=1 but this test starts Ray: it is slow" in done.stdout
