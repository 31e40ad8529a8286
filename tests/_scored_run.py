"""Builds the small real run that the report and select tests share (see conftest.py)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from synque_ray import cli
from synque_ray.demo import write_demo_data
from synque_ray.reading import sample_pool

ROWS, POOL, SAMPLE, SEEDS = 40, 80, 30, [1, 2]
EMBEDDING_DEFAULTS = ["mdm", "mmd", "pad", "mauve"]  # the default proxies but the fluency screen
FORMATS = [".json", ".jsonl", ".parquet", ".csv"]  # candidate i is written as FORMATS[i]


@dataclass
class ScoredRun:
    root: Path
    output: Path
    candidates: Path
    quality: dict[str, float]
    printed: list[str]  # what each command printed, in order


def _rewrite(path: Path, suffix: str) -> Path:
    """The demo candidate in another format, with an extra field that selection must keep."""
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    records = [{"text": t, "label": f"l{i % 3}", "n": i} for i, t in enumerate(texts)]
    target = path.with_suffix(suffix)
    path.unlink()
    if suffix == ".json":
        target.write_text(json.dumps(records))
    elif suffix == ".jsonl":
        target.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), target)
    else:
        pa_csv.write_csv(pa.Table.from_pylist(records), target)
    return target


def _leak_one_real_row(data: Path) -> None:
    """The most degraded candidate's first row becomes a row of seed 1's U_r sample, so that the
    `copies_real` rule has a row to find (the demo grammar writes no copies of the pool). The
    candidate is last under every proxy, so the verdict names it nowhere."""
    pool = [json.loads(line)["text"] for line in (data / "real" / "pool.jsonl").read_text().splitlines()]
    worst = sorted((data / "candidates").iterdir())[-1]
    records = [json.loads(line) for line in worst.read_text().splitlines()]
    records[0]["text"] = sample_pool(pool, SAMPLE, SEEDS[0], "pool")[0]
    worst.write_text("".join(json.dumps(r) + "\n" for r in records))


def demo_job(root: Path, name: str, output: Path, *, sample_size: int, seeds: list[int], batch_size: int,
             **extra) -> Path:
    """`root/<name>.yaml`: a job over the demo data written under `root/data` (U_r a pool sampled at
    `sample_size` per seed, the bundled embedding model), with `extra` top-level keys."""
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "output": str(output),
        "real": {"path": str(root / "data/real/pool.jsonl"), "text": "text", "sample_size": sample_size,
                 "seeds": seeds},
        "candidates": {"path": str(root / "data/candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": batch_size},
        **extra,
    }))
    return path


def run_cli(*args: str) -> str:
    """`synque ARGS` in this process (so it joins the test session's Ray); returns its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    assert code == 0, out.getvalue()
    return out.getvalue()


def make_scored_run(root: Path) -> ScoredRun:
    data = root / "data"
    quality = write_demo_data(data, n_candidates=len(FORMATS), rows=ROWS, pool_rows=POOL)
    _leak_one_real_row(data)
    for path, suffix in zip(sorted((data / "candidates").iterdir()), FORMATS, strict=True):
        _rewrite(path, suffix)
    output = root / "out"
    config = {
        "name": "report-test", "output": str(output),
        "real": {"path": str(data / "real" / "pool.jsonl"), "text": "text", "sample_size": SAMPLE, "seeds": SEEDS},
        "candidates": {"path": str(data / "candidates"), "text": "text"},
        "embedding": {"model": "bundled-minilm", "batch_size": 32},
        "proxies": EMBEDDING_DEFAULTS,  # the report's layout is tested on these (fluency: proxies/test_fluency.py)
        "resources": {"embed_actors": 1},
    }
    (root / "job.yaml").write_text(yaml.safe_dump(config))
    printed = [run_cli("score", str(root / "job.yaml")) for _ in range(2)]
    printed.append(run_cli("evaluate", str(output), "--performance", str(data / "quality.csv"),
                           "--id-column", "dataset_id", "--metric", "quality", "--top-k", "2"))
    return ScoredRun(root, output, data / "candidates", quality, printed)
