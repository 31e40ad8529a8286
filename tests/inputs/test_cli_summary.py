"""The CLI's summary of a run (`cli._print_summary`): its time line is read from the stage registry."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl

from synque_ray import cli
from synque_ray.reduce import rank


def test_the_time_line_gives_each_stages_wall_time_then_the_embedding_proxies_summed_compute(capsys):
    timings = {"total": 30.0, "read": 1.0, "proxies": 6.0, "embed": 2.0, "pad": 9.5, "mdm": 0.25,
               "perplexity": 12.0, "reduce": 0.5, "lens_judge": 99.0}
    counts = dict.fromkeys(["candidates_total", "candidates_scored", "candidates_reused", "candidates_failed",
                            "rows_embedded", "rows_from_cache"], 0)
    rng = np.random.default_rng(0)
    scores = pl.DataFrame([{"dataset_id": c, "proxy": "mdm", "seed": seed, "raw": mean + seed / 10,
                            "score": mean + seed / 10, "replicates": list(mean + rng.normal(0, 0.1, 20))}
                           for c, mean in (("a", 1.0), ("b", 0.0)) for seed in (1, 2)])
    summary = SimpleNamespace(rankings=rank(scores, level=0.9), notes=[],
                              counts=counts, timings=timings, failed={}, failures=[], incomplete={},
                              missing_proxies={}, skipped_files={}, lens_skipped=[], output="out",
                              run_dir="out/runs/x")
    cli._print_summary(summary, 0.9)
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("time: ")]
    # in run order, whatever the order of run.json's timings; perplexity once, as a stage's wall time
    assert line == ("time: read 1.0s, embed 2.0s, proxies 6.0s, perplexity 12.0s, reduce 0.5s, total 30.0s"
                    " | proxy compute, summed over tasks: mdm 0.2s, pad 9.5s")
