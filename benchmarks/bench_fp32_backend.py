"""fp32 embeddings on a CPU: sentence-transformers on torch against the model's fp32 ONNX export on ONNX Runtime.

    python benchmarks/bench_fp32_backend.py CONFIG [--candidates N] [--repeat R] [--threads T]

Each phase is a fresh process, alternating R times, over the same rows (the config's U_r
samples and its first N candidates): what a Ray actor pays to start (imports and model
load, from an empty interpreter) and the encode of every row, batch as configured. The
machine's fp32 export is made before the first phase (once per machine; its cost is
printed on its own). Also printed: the largest difference between the two backends'
vectors and the lowest cosine, on every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_embedding import READ_ROWS  # how the rows of a config are read, shared with the other benches

# Timed from before the first import: a Ray actor starts from an interpreter with neither loaded.
PHASE = r"""
import time
t_start = time.perf_counter()
BACKEND, THREADS, SAVE = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if BACKEND == "sentence-transformers":
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(THREADS)
    model = SentenceTransformer(resolve_model(config.embedding.model, "m")[0], device="cpu")
    encode = lambda rows: model.encode(rows, batch_size=config.embedding.batch_size, show_progress_bar=False)
else:
    from synque_ray.onnx_embed import OnnxEncoder
    encoder = OnnxEncoder(resolve_model(config.embedding.model, "m")[0], THREADS, quantize=False)
    encode = lambda rows: encoder.encode(rows, config.embedding.batch_size)
t_loaded = time.perf_counter()
vectors = encode(texts)
t_done = time.perf_counter()
import numpy as np
if SAVE:
    np.save(SAVE, vectors)
print(json.dumps({"rows": len(texts), "start_s": t_loaded - t_start, "encode_s": t_done - t_loaded,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

EXPORT = r"""
import time
from pathlib import Path
from synque_ray.models import resolve_model
from synque_ray.onnx_embed import export_path, exported_model
path = Path(resolve_model("bundled-minilm", "m")[0])
existed = export_path(path, quantize=False).is_file()
t = time.perf_counter()
exported_model(path, quantize=False)
print(f"fp32 export: {'already on this machine' if existed else f'made in {time.perf_counter() - t:.1f} s'}")
"""


def phase(config: Path, backend: str, threads: int, save: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", READ_ROWS + PHASE, str(config), backend, str(threads), save],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_avg_1min_after"] = os.getloadavg()[0]
    return result


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="synque-fp32-"))
    raw = yaml.safe_load(Path(args.config).read_text())
    if args.candidates:  # the first N candidates, through a folder of links
        picked = workdir / "candidates"
        picked.mkdir()
        for source in sorted(p for p in Path(raw["candidates"]["path"]).iterdir() if p.is_file())[:args.candidates]:
            (picked / source.name).symlink_to(source.resolve())
        raw["candidates"]["path"] = str(picked)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    print(subprocess.run([sys.executable, "-c", EXPORT], check=True, capture_output=True, text=True).stdout.strip())
    print("| repeat | backend | rows | start (imports + load) | encode | rows/s | × torch | peak RSS | load after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for repeat in range(args.repeat):
        results = {}
        for backend in ("sentence-transformers", "onnxruntime"):
            save = str(workdir / f"{backend}.npy") if repeat == 0 else ""
            results[backend] = result = phase(config, backend, args.threads, save)
            rate = result["rows"] / result["encode_s"]
            base = results["sentence-transformers"]
            ratio = rate / (base["rows"] / base["encode_s"])
            print(f"| {repeat + 1} | {backend} | {result['rows']:,} | {result['start_s']:.2f} s | "
                  f"{result['encode_s']:.1f} s | {rate:.0f} | {ratio:.2f} | {result['peak_rss_mb']:.0f} MB | "
                  f"{result['load_avg_1min_after']:.1f} |", flush=True)
    torch_vectors = np.load(workdir / "sentence-transformers.npy")
    onnx_vectors = np.load(workdir / "onnxruntime.npy")
    cosines = (torch_vectors * onnx_vectors).sum(axis=1) / (
        np.linalg.norm(torch_vectors, axis=1) * np.linalg.norm(onnx_vectors, axis=1))
    print(f"largest |difference| {np.abs(torch_vectors - onnx_vectors).max():.2e}; lowest cosine {cosines.min():.7f}")


if __name__ == "__main__":
    main()
