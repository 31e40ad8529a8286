"""What a LENS engine and its driver pay before judging, each phase in fresh processes, A/B alternating.

    python benchmarks/bench_lens_startup.py [--pairs N]

- `import`: `from vllm import LLM` with Python's cyclic garbage collector running, and paused
  (what `lens.engine.build_engine` does), with the number of collections each ran;
- `first batch`: a CPU judge (the bundled SmolLM2, the engine settings of a short job) built, then
  24 rows (96 prompts) judged, with TORCHDYNAMO_DISABLE=0 (vLLM torch.compiles two sampler helpers
  on first use) and =1 (what `lens.engine.prepare_process` sets for an eager CPU engine); the
  judgements of the two are compared;
- `context check`: the tokens of 10 rubric prefixes counted with the scorer's tokenizer through
  transformers' AutoTokenizer (what `lens.plan.rubrics_too_long` did) and through `tokenizers`
  (what it does now), from a fresh process's start.

Every phase runs in its own process, so each pays what a fresh Ray actor or driver pays; the two
variants of a phase alternate, and their order flips every pair. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

IMPORT = r"""
import gc, json, os, sys, time
os.environ["VLLM_LOGGING_LEVEL"] = "WARNING"
started = time.perf_counter()
if sys.argv[1] == "paused":
    gc.disable()
from vllm import LLM
gc.enable()
print(json.dumps({"s": time.perf_counter() - started, "collections": [g["collections"] for g in gc.get_stats()]}))
"""

FIRST_BATCH = r"""
import json, os, sys, time
started = time.perf_counter()
import numpy as np
import pyarrow as pa
from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.demo import _headline
from synque_ray.lens.engine import engine_settings
from synque_ray.lens.plan import judging_plan
from synque_ray.lens.rubric import Rubric
from synque_ray.lens.judge import JudgeActor
from synque_ray.models import resolve_llm

path, _ = resolve_llm("bundled-smollm2", "lens.scorer")
settings = engine_settings(LensConfig(max_model_len=2048, task="sentiment"), ResourcesConfig(), path, rows=100)
rubric = Rubric(commonalities=["Rows are short news headlines"], real_vs_synthetic=["Real rows name firms"],
                synthetic_vs_real=["Synthetic rows repeat themselves"], source="bench")
class Named:
    def __init__(self, name): self.name = name
_, prefixes = judging_plan("sentiment", [Named("a"), Named("b")], [1], {("a", 1): rubric, ("b", 1): rubric})
actor = JudgeActor(settings, prefixes, 64)
built = time.perf_counter()
rng = np.random.default_rng(0)
batch = pa.table({"pair": [i % 2 for i in range(24)], "text": [_headline(rng, 1.0) for _ in range(24)],
                  "dataset_id": ["a"] * 24, "seed": [1] * 24, "row_id": list(range(24)), "role": ["synthetic"] * 24})
out = actor(batch)
done = time.perf_counter()
judged = out.select([c for c in out.column_names if c.startswith(("g_", "e_"))]).to_pydict()
print(json.dumps({"engine_s": built - started, "batch_s": done - built, "judgements": judged}))
os._exit(0)
"""

CONTEXT_CHECK = r"""
import json, sys, time
started = time.perf_counter()
from synque_ray.models import resolve_llm
path, _ = resolve_llm("bundled-smollm2", "lens.scorer")
prefixes = ["Real rows name listed firms and quote their moves in percent. " * 12 for _ in range(10)]
if sys.argv[1] == "transformers":
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(path)
    counts = [len(tokenizer.encode(p, add_special_tokens=False)) for p in prefixes]
else:
    from pathlib import Path
    from synque_ray.lens.plan import token_counter
    count = token_counter(Path(path))
    counts = [count(p) for p in prefixes]
print(json.dumps({"s": time.perf_counter() - started, "tokens": counts[0],
                  "transformers": "transformers" in sys.modules}))
"""


def _run(script: str, variant: str, env: dict | None = None) -> dict:
    import os

    done = subprocess.run([sys.executable, "-c", script, variant], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    for pair in range(args.pairs):
        order = ("running", "paused") if pair % 2 == 0 else ("paused", "running")
        for variant in order:
            result = _run(IMPORT, variant)
            print(f"import, collector {variant}: {result['s']:.2f} s, collections {result['collections']}", flush=True)
    for pair in range(args.pairs):
        judged = {}
        for flag in (("0", "1") if pair % 2 == 0 else ("1", "0")):
            result = _run(FIRST_BATCH, flag, {"TORCHDYNAMO_DISABLE": flag})
            judged[flag] = result["judgements"]
            print(f"first batch, TORCHDYNAMO_DISABLE={flag}: engine {result['engine_s']:.1f} s, "
                  f"24 rows {result['batch_s']:.1f} s", flush=True)
        print(f"  the same judgements: {judged['0'] == judged['1']}", flush=True)
    for pair in range(args.pairs):
        for variant in (("transformers", "tokenizers") if pair % 2 == 0 else ("tokenizers", "transformers")):
            result = _run(CONTEXT_CHECK, variant)
            print(f"context check via {variant}: {result['s']:.2f} s, {result['tokens']} tokens in the first prefix, "
                  f"transformers imported: {result['transformers']}", flush=True)


if __name__ == "__main__":
    main()
