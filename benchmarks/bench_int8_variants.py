"""Which int8: variants of the bundled MiniLM's ONNX export against its fp32 export, side by side.

    python benchmarks/bench_int8_variants.py --workdir /tmp/int8b/variants [--rounds 8]

Texts: 2,000 headlines of the sentiment benchmark (the first 500 of every 8th candidate).
Fidelity: cosine of each variant's sentence vectors to the fp32 export's (mean, min).
Speed: in one process, each round times every backend on the same 500 rows, in an order
rotated per round, and gives each one's speed as a multiple of the bare fp32
`SentenceTransformer.encode` of that round (2 threads, batch 64). Ratios, not rows/s,
are the figure to read on a shared machine. Variants (all per output channel or finer):

- dynamic: onnxruntime `quantize_dynamic`, one activation scale per batch (recipe 1);
- dynamic, FFN down fp32: the same, leaving the MatMuls whose weight has more rows than
  columns (the FFN down-projections) in float;
- per-token: `onnx_embed.quantize_graph` when it was MatMulInteger with one activation
  scale per token (recipe 2; kept here as `per_token_graph`);
- blockwise: `onnx_embed.quantize_graph`, MatMulNBits, 8 bits, blocks of 32, int8 compute (recipe 3).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path

import numpy as np

from synque_ray import onnx_embed
from synque_ray.models import resolve_model

TEXTS = "../shared/bench/sentiment/synthetic"


def per_token_graph(model):
    """Recipe 2: every weight MatMul as MatMulInteger, int8 columns, one uint8 scale per token."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    constants = {"pt.tiny": np.array(1e-12, np.float32), "pt.127": np.array(127, np.float32),
                 "pt.128": np.array(128, np.float32), "pt.zp": np.array(128, np.uint8)}
    nodes, stored = [], [numpy_helper.from_array(value, name) for name, value in constants.items()]
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        scales = np.abs(w).max(axis=0) / 127
        scales = np.where(scales > 0, scales, 1).astype(np.float32)
        p, x = node.name, node.input[0]
        stored += [numpy_helper.from_array(np.clip(np.rint(w / scales), -127, 127).astype(np.int8), p + ".w8"),
                   numpy_helper.from_array(scales, p + ".ws")]
        steps = [("Abs", [x], "abs", {}), ("ReduceMax", [p + ".abs"], "peak", {"axes": [-1], "keepdims": 1}),
                 ("Max", [p + ".peak", "pt.tiny"], "floor", {}), ("Div", [p + ".floor", "pt.127"], "s", {}),
                 ("Div", [x, p + ".s"], "xs", {}), ("Round", [p + ".xs"], "xr", {}),
                 ("Add", [p + ".xr", "pt.128"], "xo", {}), ("Cast", [p + ".xo"], "x8", {"to": TensorProto.UINT8}),
                 ("MatMulInteger", [p + ".x8", p + ".w8", "pt.zp"], "i32", {}),
                 ("Cast", [p + ".i32"], "f", {"to": TensorProto.FLOAT}), ("Mul", [p + ".f", p + ".s"], "y", {})]
        nodes += [helper.make_node(op, inputs, [f"{p}.{out}"], **attrs) for op, inputs, out, attrs in steps]
        nodes.append(helper.make_node("Mul", [p + ".y", p + ".ws"], list(node.output)))
    used = {name for node in nodes for name in node.input}
    kept = [t for t in [*model.graph.initializer, *stored] if t.name in used]
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(kept)
    return model


def build(fp32: Path, workdir: Path) -> dict[str, Path]:
    """Each variant's file under workdir, made from the fp32 export once."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32))
    weights = {t.name: t.dims for t in graph.graph.initializer}
    down = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights
            and weights[n.input[1]][0] > weights[n.input[1]][1]]
    files = {name: workdir / f"{name}.onnx" for name in
             ("dynamic", "dynamic, FFN down fp32", "per-token", "blockwise")}
    for name, excluded in (("dynamic", []), ("dynamic, FFN down fp32", down)):
        if not files[name].exists():
            quantize_dynamic(str(fp32), str(files[name]), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=excluded, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    for name, rewrite in (("per-token", per_token_graph), ("blockwise", onnx_embed.quantize_graph)):
        if not files[name].exists():
            onnx.save(rewrite(graph), str(files[name]))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--texts", default=TEXTS)
    args = parser.parse_args()

    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer

    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(resolve_model("bundled-minilm", "bench")[0])
    encoder = onnx_embed.OnnxEncoder(str(folder), 2, quantize=False, root=args.workdir / "exports")
    fp32 = onnx_embed.exported_model(folder, args.workdir / "exports", quantize=False)
    texts = []
    for path in sorted(glob.glob(f"{args.texts}/*.json"))[::8]:
        texts += [row["headline"] for row in json.loads(Path(path).read_text())][:500]

    def session(path):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    sessions = {"onnx fp32": encoder.session, **{n: session(p) for n, p in build(fp32, args.workdir).items()}}

    def onnx_encode(name):
        def run(rows):
            encoder.session = sessions[name]
            return encoder.encode(rows, 64)
        return run

    torch.set_num_threads(2)
    model = SentenceTransformer(str(folder), device="cpu")
    backends = {"torch fp32 (bare)": lambda rows: model.encode(rows, batch_size=64),
                **{name: onnx_encode(name) for name in sessions}}
    reference = backends["onnx fp32"](texts)
    for name in sessions:
        cosines = (backends[name](texts) * reference).sum(axis=1)
        print(f"{name:24s} cosine to fp32: mean {cosines.mean():.4f}, min {cosines.min():.4f}", flush=True)
    ratios: dict[str, list[float]] = {name: [] for name in backends}
    for round_ in range(args.rounds):
        rows = texts[(round_ % 4) * 500:(round_ % 4 + 1) * 500]
        order = list(backends)[round_ % len(backends):] + list(backends)[:round_ % len(backends)]
        seconds = {}
        for name in order:
            start = time.perf_counter()
            backends[name](rows)
            seconds[name] = time.perf_counter() - start
        for name in backends:
            ratios[name].append(seconds["torch fp32 (bare)"] / seconds[name])
        print(f"round {round_}, load {os.getloadavg()[0]:.1f}: "
              + ", ".join(f"{name} {500 / seconds[name]:.0f} rows/s" for name in backends), flush=True)
    for name, values in ratios.items():
        print(f"{name:24s} × bare fp32 per round: {', '.join(f'{v:.2f}' for v in values)}; "
              f"median {np.median(values):.2f}")


if __name__ == "__main__":
    main()
