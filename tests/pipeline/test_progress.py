"""The embedding bar's ETA: measured from the end of the first batch, so the seconds before it
(Ray's start, the model's load) do not make the first estimates far too long."""

import io

import pytest
import tqdm.std

from synque_ray.stage.embedding import Progress


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, set by the test (seconds)."""
    now = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    return now


def test_the_eta_counts_from_the_first_batch_not_from_the_start(clock, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # the bar's output, kept off the test's
    progress = Progress(rows=2000, candidates=4, enabled=True)
    clock[0] = 60.0  # a minute of start-up before the first batch of 100 rows lands
    progress.rows(100)
    first = progress.bar.format_dict
    assert first["elapsed"] == 60.0 and progress.bar.n == 100  # elapsed still from the start
    rate = first["rate"] or (first["n"] - first["initial"]) / first["elapsed"]
    assert rate == 0  # no estimate yet: "?" rather than one dominated by the start-up
    for second in range(1, 6):  # then 100 rows a second
        clock[0] = 60.0 + second
        progress.rows(100)
    shown = progress.bar.format_dict
    remaining = (shown["total"] - shown["n"]) / shown["rate"]
    assert shown["n"] == 600 and remaining == pytest.approx(14.0, rel=0.05)  # 1400 rows at 100/s
    assert "scored 0/4 candidates" in str(progress.bar)
    progress.close()

