"""vLLM's engine core in its own process (vLLM's default) or in the caller's, on CPU, side by side.

    python benchmarks/bench_engine_core.py CONFIG [--repeats 2]

CONFIG: a `bench_lens.py` work dir's config.yaml whose rubrics are written (its `stage`
phase ran once). Each repeat runs `bench_lens.py`'s `bare` phase twice, alternating, in
fresh processes: VLLM_ENABLE_V1_MULTIPROCESSING=1 (the engine core spawned as a child
process, which imports torch and vLLM again and loads the model there) and =0 (the core
in the calling process). Same prompts, same sampling; prints the engine start-up, the
judging time of every prompt in one call and in Ray Data-batch-sized calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH_LENS = Path(__file__).resolve().parent / "bench_lens.py"


def bare(config: str, multiprocessing: str) -> dict:
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING=multiprocessing)
    result = subprocess.run([sys.executable, str(BENCH_LENS), "--phase", "bare", config, "throughput", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=env, text=True, check=True, start_new_session=True)
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("| repeat | engine core | engine start-up s | judge all prompts s | in batch-sized calls s | "
          "prompts | load before |")
    print("|---|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        for mode, label in (("1", "child process"), ("0", "in process")):
            load = os.getloadavg()[0]
            out = bare(args.config, mode)
            print(f"| {repeat + 1} | {label} | {out['engine_startup_s']:.1f} | {out['generate_s']:.1f} | "
                  f"{out['generate_chunked_s']:.1f} | {out['prompts']} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
