"""Embedding row sets on Ray Data, with an on-disk cache.

The cache unit is a row set (one candidate, or one seed's U_r sample), keyed by the
model id and the content hash of its texts: a re-run of the same inputs embeds
nothing, and a changed candidate is the only one re-embedded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from synque_ray.errors import UserError
from synque_ray.models import resolve_model
from synque_ray.reading import InputChanged, RowSet
from synque_ray.storage import Store

# Rows per actor call, in encoder batches. `SentenceTransformer.encode` sorts its input by
# length before batching, so one call over many rows pads far less than one call per
# encoder batch: on the sentiment headlines, calls of 256 rows took ~20% longer than calls
# of ~1,000 (BENCHMARKS.md). Each call holds the rows of one row set only, cut the same
# way every run, so a set's embeddings never depend on which other sets share the run.
ENCODER_BATCHES_PER_CALL = 8


@dataclass(frozen=True)
class CachedEmbeddings:
    """A pointer to one cache entry: cheap to ship to a Ray task, which reads it itself.

    The driver hands these to the proxy tasks instead of arrays, so that its memory and
    the object store stay flat however many candidates a job has.
    """

    location: str
    key: str
    size: int

    def load(self) -> np.ndarray:
        vectors = _read_vectors(Store(self.location), self.key, self.size)
        if vectors is None:
            raise RuntimeError(f"embedding cache entry {self.location}/{self.key} is missing or incomplete")
        return vectors


def _read_vectors(store: Store, key: str, size: int | None) -> np.ndarray | None:
    table = store.read_table(key)
    if table is None or size not in (None, table.num_rows) or "embedding" not in table.column_names:
        return None
    values = table.column("embedding").combine_chunks().flatten()
    return _as_numpy(values).reshape(table.num_rows, -1).astype(np.float32)


_FLOATS = {pa.float32(): np.float32, pa.float64(): np.float64}


def _as_numpy(values: pa.Array) -> np.ndarray:
    """A float Arrow array without nulls as numpy, straight from its buffer: `Array.to_numpy`
    imports pandas on first use, a quarter of a second on every run that reads the cache."""
    dtype = _FLOATS.get(values.type)
    if dtype is None or values.null_count:
        return values.to_numpy(zero_copy_only=False)
    start = values.offset * np.dtype(dtype).itemsize
    return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values), offset=start)


class EmbeddingCache:
    def __init__(self, store: Store, model_id: str):
        self.store = store
        self.prefix = "embeddings/" + hashlib.sha256(model_id.encode()).hexdigest()[:16]

    def _key(self, rowset: RowSet) -> str:
        return f"{self.prefix}/{rowset.content_hash}.parquet"

    def has(self, rowset: RowSet) -> bool:
        """A complete entry exists (checked from the Parquet footer, without reading the data)."""
        return self.store.row_count(self._key(rowset)) == rowset.size

    def load(self, rowset: RowSet) -> np.ndarray | None:
        """The embeddings, or None when absent or not a complete, readable file."""
        return _read_vectors(self.store, self._key(rowset), rowset.size)

    def load_hash(self, content_hash: str) -> np.ndarray | None:
        """The entry of a row set known only by its content hash (a finished run's), or None."""
        return _read_vectors(self.store, f"{self.prefix}/{content_hash}.parquet", None)

    def handle(self, rowset: RowSet) -> CachedEmbeddings:
        return CachedEmbeddings(self.store.uri, self._key(rowset), rowset.size)

    def save(self, rowset: RowSet, embeddings: np.ndarray) -> None:
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
        column = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])
        self.store.write_table(self._key(rowset), pa.table({"embedding": column}))


def _torch_encoder(model_path: str, threads: int) -> Callable[[list[str], int], np.ndarray]:
    """sentence-transformers on torch, on the GPU when the actor holds one."""
    import torch
    from sentence_transformers import SentenceTransformer

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, threads))
    model = SentenceTransformer(model_path, device="cuda" if torch.cuda.is_available() else "cpu")
    return lambda texts, batch_size: model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                                  show_progress_bar=False)


def _onnx_encoder(quantize: bool) -> Callable[[str, int], Callable[[list[str], int], np.ndarray]]:
    """The model's ONNX export on ONNX Runtime, int8 weights when `quantize` (synque_ray/onnx_embed.py)."""

    def build(model_path: str, threads: int) -> Callable[[list[str], int], np.ndarray]:
        from synque_ray.onnx_embed import OnnxEncoder

        return OnnxEncoder(model_path, threads, quantize=quantize).encode

    return build


# (precision, backend) → what builds the encoder in the actor. On CPUs fp32 runs the model's
# fp32 ONNX export on ONNX Runtime: the same vectors as torch (largest difference 2.5e-7 on the
# sentiment rows), 1.7-1.9× its rows/s, and an actor that starts in 0.3 s instead of 6-7 s of
# torch and transformers imports (BENCHMARKS.md). sentence-transformers stays for GPUs and for
# models whose head the export does not reproduce. int8 is a CPU choice; it becomes the CPU
# default once it keeps the rankings and embeds at ≥ 2× the bare fp32 encode.
ENCODERS = {
    ("fp32", "sentence-transformers"): _torch_encoder,
    ("fp32", "onnxruntime"): _onnx_encoder(quantize=False),
    ("int8", "onnxruntime"): _onnx_encoder(quantize=True),
}
CPU_PRECISION = "fp32"


@dataclass(frozen=True)
class EmbeddingModel:
    """The embedding model a job runs, resolved once: where it loads from, the id its cache
    entries and results are keyed by, and the precision and backend the actors run it at."""

    path: str
    id: str
    precision: str
    backend: str


def embedding_precision(config) -> str:
    """The precision a job embeds at: the config's, or the default for where it runs."""
    if config.embedding.precision is not None:
        return config.embedding.precision
    return "fp32" if config.resources.embed_gpus > 0 else CPU_PRECISION


def _backend(path: str, precision: str, on_gpus: bool) -> str:
    """ONNX Runtime on CPUs when the export reproduces the model's head; torch otherwise.

    int8 needs the export, so a model it cannot reproduce is a one-line error here, before
    any work (config.py already refuses int8 with GPUs), as is an export folder that cannot
    be written.
    """
    from synque_ray.onnx_embed import read_head, writable_cache_root

    if precision == "fp32" and on_gpus:
        return "sentence-transformers"
    try:
        read_head(Path(path))
    except UserError:  # a Dense layer, weighted pooling...: only sentence-transformers runs it whole
        if precision == "int8":
            raise
        return "sentence-transformers"
    writable_cache_root()  # where the actors keep the export: checked here, before any work
    return "onnxruntime"


def resolve_embedding(config) -> EmbeddingModel:
    """The model, precision and backend of a job's embeddings, and the id they are keyed by.

    The id names the precision and backend whenever they are not fp32 on
    sentence-transformers, so embeddings of two backends never share a cache entry or a
    result; that one keeps the bare model id, as caches made before precisions existed.
    """
    from synque_ray.onnx_embed import RECIPE

    path, model_id = resolve_model(config.embedding.model, "embedding.model")
    precision = embedding_precision(config)
    backend = _backend(path, precision, config.resources.embed_gpus > 0)
    if (precision, backend) != ("fp32", "sentence-transformers"):
        model_id = f"{model_id}#{precision}-{backend}-r{RECIPE}"
    return EmbeddingModel(path, model_id, precision, backend)


class Embedder:
    """Ray Data actor: loads the model once at the given precision and backend, embeds batches."""

    def __init__(self, model_path: str, batch_size: int, threads: int, precision: str, backend: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.encode = ENCODERS[(precision, backend)](model_path, threads)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encode(list(batch["text"]), self.batch_size)
        return {"set": batch["set"], "row": batch["row"], "embedding": np.asarray(vectors, dtype=np.float32)}


def embed_rowsets(
    rowsets: list[RowSet],
    model: EmbeddingModel,
    batch_size: int,
    actors: int,
    gpus_per_actor: float,
    cpus_per_actor: int,
    on_done: Callable[[int, np.ndarray], None],
    on_rows: Callable[[int], None] = lambda n: None,
    on_changed: Callable[[int, InputChanged], None] | None = None,
) -> None:
    """Embed every row set through one Ray Data pipeline; call `on_done(i, vectors)` per set.

    A set is embedded from the texts its content hash was checked against when they were
    read (`RowSet.texts`), so the vectors `on_done` gets, and the cache stores under that
    hash, are those of the hashed rows. A set whose file changed since it was hashed is
    passed to `on_changed(i, error)` and left out (raised when there is no `on_changed`).

    Order is preserved, so results arrive set by set and the driver only ever holds
    the set being completed.
    """
    import ray
    import ray.data

    from synque_ray.raycluster import map_actor_pool

    if not rowsets:
        return
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Blocks of at most `rows_per_call` rows of one row set each, put in the object store
    # one set at a time (the driver never holds more than one candidate's texts); each
    # block is one actor call.
    rows_per_call = batch_size * ENCODER_BATCHES_PER_CALL
    blocks = []
    for i, rs in enumerate(rowsets):
        try:
            texts = rs.texts
        except InputChanged as err:
            if on_changed is None:
                raise
            on_changed(i, err)
            continue
        for start in range(0, rs.size, rows_per_call):
            stop = min(start + rows_per_call, rs.size)
            blocks.append(ray.put(pa.table({
                "set": np.full(stop - start, i, dtype=np.int64), "row": np.arange(start, stop),
                "text": texts[start:stop],
            })))
        del texts
    # A killed actor is restarted and its in-flight batches are retried (Ray Data's pool).
    dataset = map_actor_pool(
        ray.data.from_arrow_refs(blocks), Embedder,
        {"model_path": model.path, "batch_size": batch_size, "threads": cpus_per_actor,
         "precision": model.precision, "backend": model.backend},
        actors=actors, batch_size=None, batch_format="numpy",  # one block per call
        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
    )
    _collect(dataset.iter_batches(batch_size=None, batch_format="numpy"), rowsets, on_done, on_rows)


def _collect(batches: Iterable[dict], rowsets: list[RowSet], on_done: Callable[[int, np.ndarray], None],
             on_rows: Callable[[int], None]) -> None:
    current: int | None = None
    parts: list[np.ndarray] = []
    rows: list[np.ndarray] = []

    def flush(index: int) -> None:
        order = np.argsort(np.concatenate(rows), kind="stable")
        vectors = np.concatenate(parts)[order]
        if len(vectors) != rowsets[index].size:
            raise RuntimeError(f"row set {rowsets[index].name}: got {len(vectors)} embeddings")
        on_done(index, vectors)

    for batch in batches:
        on_rows(len(batch["set"]))
        for set_index in np.unique(batch["set"]):
            mask = batch["set"] == set_index
            if current is not None and set_index != current:
                flush(current)
                parts, rows = [], []
            current = int(set_index)
            parts.append(np.asarray(batch["embedding"])[mask])
            rows.append(np.asarray(batch["row"])[mask])
    if current is not None:
        flush(current)
