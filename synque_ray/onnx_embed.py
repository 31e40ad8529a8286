"""Sentence embeddings on CPUs: an ONNX export of the model, run by ONNX Runtime; int8 when quantized.

Every CPU embedding: fp32 runs the plain export,
which gives torch's vectors without an actor importing torch; int8 the quantized
one. The transformer is exported through
`torch.onnx` (no optimum: its exporter pins an older transformers), and every
matrix product with a weight becomes ONNX Runtime's MatMulNBits at 8 bits with int8
compute (`quantize_graph`): weights and activations are both quantized in blocks of
32 values along the summed axis, each block on its own scale, the activations at run
time per token. Not `quantize_dynamic`'s one activation scale per batch: a few tokens
of each text carry activations tens of times larger than the rest, and one shared
scale coarsens every other token (BENCHMARKS.md: 1 − cosine to fp32 .0074 with one
scale per batch, .0024 with one per token, .0003 in blocks of 32). A row's vector
therefore never depends on the rows batched with it. The sentence-transformers head that follows
the transformer (pooling, then an optional L2 normalisation) is applied here in
numpy, read from the model's own `modules.json` and pooling config.

Each export (fp32; int8, quantized from the fp32 file) is made once per machine and kept in a local folder
(`SYNQUE_ONNX_CACHE`, default `~/.cache/synque-ray/onnx`), under a name keyed by
the content of the model's files and by everything the export depends on (recipe,
opset, torch and onnxruntime versions). It is never downloaded. Concurrent actors
on one machine wait on a file lock; each export is written to a temporary folder
and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synque_ray.errors import UserError
from synque_ray.models import content_digest, fast_tokenizer

RECIPE = 3  # bumped when the export or quantization recipe changes: part of every key
OPSET = 17
BACKEND = "onnxruntime"


@dataclass(frozen=True)
class SentenceHead:
    """What sentence-transformers does around the transformer, as the model folder declares it."""

    max_length: int | None  # tokens kept per text (sentence_bert_config.json max_seq_length)
    lower_case: bool
    pooling: str  # a key of POOLERS
    normalize: bool


# --------------------------------------------------------------------- the head in numpy


def _mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _cls(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return hidden[:, 0]


def _max(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None].astype(bool), hidden, -1e9).max(axis=1)


# hidden (batch, tokens, dim) float, mask (batch, tokens) 0/1 → (batch, dim); padding never counts.
POOLERS = {"mean": _mean, "cls": _cls, "max": _max}
_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max"}


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, (n, d) → (n, d); a zero row stays zero (torch's F.normalize eps)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def read_head(folder: Path) -> SentenceHead:
    """The pooling and normalisation a sentence-transformers folder declares.

    Only Transformer → Pooling (one of mean, cls, max) → optional Normalize is
    supported: anything else (a Dense layer, weighted pooling) would be silently
    left out of the int8 embeddings, so it is an error instead.
    """
    where = "embedding.precision: int8"
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise UserError(f"{where} needs a sentence-transformers model folder; {folder} has no modules.json")
    modules = json.loads(modules_file.read_text())
    kinds = [entry["type"].rsplit(".", 1)[-1] for entry in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UserError(f"{where} supports Transformer → Pooling → Normalize models; {folder} has "
                        f"{' → '.join(kinds)} (use precision: fp32)")
    pooling_config = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    modes = [mode for key, mode in _POOLING_KEYS.items() if pooling_config.get(key)]
    others = [key for key, on in pooling_config.items() if key.startswith("pooling_mode") and on
              and key not in _POOLING_KEYS]
    if len(modes) != 1 or others:
        raise UserError(f"{where} supports one of mean, cls or max pooling; {folder} pools by "
                        f"{', '.join(modes + others) or 'nothing'} (use precision: fp32)")
    sbert_file = folder / "sentence_bert_config.json"
    sbert = json.loads(sbert_file.read_text()) if sbert_file.is_file() else {}
    return SentenceHead(sbert.get("max_seq_length"), bool(sbert.get("do_lower_case", False)), modes[0],
                        kinds[-1] == "Normalize")


# --------------------------------------------------------------------- the exported file


def export_key(folder: Path, quantize: bool = True) -> str:
    """The cache name of a folder's export: its content, the recipe and the tools' versions.

    Versions are read from the installed packages' metadata, so finding an existing
    export never imports torch.
    """
    from importlib import metadata

    parts = [content_digest(folder), f"recipe{RECIPE}", f"opset{OPSET}", f"torch{metadata.version('torch')}",
             f"ort{metadata.version('onnxruntime')}", "int8" if quantize else "fp32"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def cache_root() -> Path:
    """Where exports live on this machine: $SYNQUE_ONNX_CACHE, or ~/.cache/synque-ray/onnx."""
    return Path(os.environ.get("SYNQUE_ONNX_CACHE") or Path.home() / ".cache" / "synque-ray" / "onnx")


def writable_cache_root(root: Path | None = None) -> Path:
    """The export folder, created if needed; one line naming it and SYNQUE_ONNX_CACHE when it
    cannot be written (a read-only home in a container, say), instead of a failed actor's traceback."""
    root = Path(root or cache_root())
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise UserError(f"embedding: the ONNX export cache {root} is not writable ({reason}); "
                        "set SYNQUE_ONNX_CACHE to a writable folder") from None
    return root


def export_path(folder: Path, quantize: bool = True, root: Path | None = None) -> Path:
    """Where the folder's export lives (made or not yet): <root>/<export_key>/model.onnx."""
    return Path(root or cache_root()) / export_key(folder, quantize) / "model.onnx"


def exported_model(folder: Path, root: Path | None = None, quantize: bool = True) -> Path:
    """The path of the folder's ONNX file (int8 weights when `quantize`), exporting it on first use.

    One export per machine: a second caller finds the file, and a concurrent one
    waits on the lock and then finds it. The export is built in a temporary folder
    and renamed into place; a failed export leaves nothing behind.
    """
    root = writable_cache_root(root)
    model = export_path(folder, quantize, root)
    target = model.parent
    if model.is_file():
        return model
    with (root / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not model.is_file():  # another process may have made it meanwhile
            temporary = root / f"{target.name}.tmp-{uuid.uuid4().hex[:8]}"
            temporary.mkdir()
            try:
                _export(folder, temporary, quantize, root)
                try:
                    os.rename(temporary, target)
                except OSError:  # a machine sharing the folder (NFS: no common lock) finished first
                    if not model.is_file():
                        raise
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
    return model


def _export(folder: Path, out: Path, quantize: bool, root: Path) -> None:
    """Write out/model.onnx: the transformer's last hidden state for (input ids, mask[, token types]).

    int8 is the fp32 export (made first if it is not on the machine yet) with its matrix
    products quantized: once the fp32 file exists, an int8 export imports neither torch
    nor transformers and takes about a second.
    """
    if quantize:
        import onnx

        plain = exported_model(folder, root, quantize=False)
        onnx.save(quantize_graph(onnx.load(str(plain))), str(out / "model.onnx"))
        return
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar in the run's output
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Eager attention exports as plain MatMul/Softmax, which the quantizer and ORT's fusions understand.
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in tokenizer.model_input_names]

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    sample = tokenizer(["an example to trace", "two"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(LastHidden(model), tuple(sample[name] for name in names), str(out / "model.onnx"),
                          dynamo=False, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=OPSET)


# --------------------------------------------------------------------- int8 matrix products

BLOCK = 32  # weights and activations are quantized in blocks of this many values along the summed axis


def quantize_blocks(weight: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float weight → ((N, ceil(K/block), block) uint8, (N * ceil(K/block),) float32 scales).

    Column n's values k in [b·block, (b+1)·block) share one symmetric scale, max |w| / 127
    (1 for an all-zero block), and are stored as round(w / scale) + 128: the layout and
    default zero point of ONNX Runtime's MatMulNBits at 8 bits. K is padded with zeros
    to whole blocks.
    """
    k, n = weight.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = weight.T
    padded = padded.reshape(n, blocks, block)
    scales = np.abs(padded).max(axis=2) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    stored = np.clip(np.rint(padded / scales[..., None]), -127, 127) + 128
    return stored.astype(np.uint8), scales.reshape(-1)


def quantize_graph(model, block: int = BLOCK):
    """The ONNX model with every MatMul by a stored weight replaced by MatMulNBits, 8 bits, int8 compute.

    accuracy_level 4 has ONNX Runtime quantize the activation too, per row and per block
    of `block` values, and multiply in int8: each token's scale is set by its own values,
    not by the largest token of the batch as `quantize_dynamic`'s one scale per tensor
    is (BENCHMARKS.md: 1 − cosine to fp32 .0003 against .0074). Products of two
    activations (attention scores) stay float. Returns a new ModelProto.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes, stored = [], []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        values, scales = quantize_blocks(weight, block)
        stored += [numpy_helper.from_array(values, f"{name}.q8"), numpy_helper.from_array(scales, f"{name}.scales")]
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], f"{name}.q8", f"{name}.scales"], list(node.output),
                                      name=f"{name}.int8", domain="com.microsoft", K=weight.shape[0],
                                      N=weight.shape[1], bits=8, block_size=block, accuracy_level=4))
    used = {name for node in nodes for name in node.input}
    kept = [tensor for tensor in [*graph.initializer, *stored] if tensor.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


# --------------------------------------------------------------------- the encoder


def _tokenizer(folder: Path, max_length: int | None):
    """(texts → token ids with special tokens, truncated to max_length; the padding id).

    The folder's tokenizer.json when there is one (`models.fast_tokenizer`), so that the
    actor imports neither transformers nor torch (a minute of its start-up on a busy
    machine); otherwise transformers' AutoTokenizer.
    """
    tokenizer = fast_tokenizer(folder)
    if tokenizer is not None:
        if max_length is not None:
            tokenizer.enable_truncation(max_length)
        special = folder / "special_tokens_map.json"
        pad = json.loads(special.read_text()).get("pad_token") if special.is_file() else None
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = tokenizer.token_to_id(pad) if pad else None
        return (lambda texts: [e.ids for e in tokenizer.encode_batch(texts)]), pad_id or 0
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(folder)
    return (lambda texts: auto(texts, truncation=max_length is not None, max_length=max_length)["input_ids"],
            auto.pad_token_id or 0)


class OnnxEncoder:
    """Embeds texts as the sentence-transformers model would, through the exported ONNX file.

    `threads` is the CPUs the actor holds (ONNX Runtime's intra-op pool); inter-op
    parallelism is off, so the encoder never uses more than it was given.
    """

    def __init__(self, model_path: str, threads: int, quantize: bool = True, root: Path | None = None):
        import onnxruntime

        folder = Path(model_path)
        self.head = read_head(folder)
        self.tokenize, self.pad_id = _tokenizer(folder, self.head.max_length)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(str(exported_model(folder, root, quantize)), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32; texts are batched by token count, longest first, to pad little."""
        if not texts:
            return np.zeros((0, self.session.get_outputs()[0].shape[-1] or 0), dtype=np.float32)
        if self.head.lower_case:
            texts = [text.lower() for text in texts]
        ids = self.tokenize(list(texts))
        lengths = np.array([len(row) for row in ids])
        order = np.argsort(-lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            width = int(lengths[rows].max())
            batch = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                batch[i, :lengths[row]] = ids[row]
                mask[i, :lengths[row]] = 1
            feeds = {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)}
            hidden = self.session.run(None, {name: feeds[name] for name in self.inputs})[0]
            vectors = POOLERS[self.head.pooling](hidden, mask)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None  # texts is not empty, so the loop ran
        return l2_normalize(out) if self.head.normalize else out
