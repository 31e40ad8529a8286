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

import numpy as np
import pyarrow as pa

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
    """fp32: sentence-transformers on torch, on the GPU when the actor holds one."""
    import torch
    from sentence_transformers import SentenceTransformer

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, threads))
    model = SentenceTransformer(model_path, device="cuda" if torch.cuda.is_available() else "cpu")
    return lambda texts, batch_size: model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                                  show_progress_bar=False)


def _onnx_encoder(model_path: str, threads: int) -> Callable[[list[str], int], np.ndarray]:
    """int8: the model's quantized ONNX export on ONNX Runtime (CPU only; synque_ray/onnx_embed.py)."""
    from synque_ray.onnx_embed import OnnxEncoder

    return OnnxEncoder(model_path, threads).encode


# embedding.precision → (backend named in cache keys, what builds the encoder). Without GPUs
# the precision left unset is CPU_PRECISION; with GPUs it is fp32 (int8 is a CPU choice).
# int8 becomes the CPU default once it is shown to keep the rankings and to embed at ≥ 2× the
# bare fp32 encode (issue 15); BENCHMARKS.md has where the measurement stands.
ENCODERS = {"fp32": ("sentence-transformers", _torch_encoder), "int8": ("onnxruntime", _onnx_encoder)}
CPU_PRECISION = "fp32"


def embedding_precision(config) -> str:
    """The precision a job embeds at: the config's, or the default for where it runs."""
    if config.embedding.precision is not None:
        return config.embedding.precision
    return "fp32" if config.resources.embed_gpus > 0 else CPU_PRECISION


def resolve_embedding(config) -> tuple[str, str]:
    """(what to load, the model id of cache and result keys).

    The id names the precision and backend, so int8 and fp32 embeddings never share
    a cache entry or a result. fp32 keeps the bare model id: caches made before
    precisions existed stay valid.
    """
    path, model_id = resolve_model(config.embedding.model, "embedding.model")
    precision = embedding_precision(config)
    if precision == "fp32":
        return path, model_id
    from synque_ray.onnx_embed import RECIPE

    return path, f"{model_id}#{precision}-{ENCODERS[precision][0]}-r{RECIPE}"


class Embedder:
    """Ray Data actor: loads the model once at the given precision, embeds batches."""

    def __init__(self, model_path: str, batch_size: int, threads: int = 1, precision: str = "fp32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.encode = ENCODERS[precision][1](model_path, threads)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encode(list(batch["text"]), self.batch_size)
        return {"set": batch["set"], "row": batch["row"], "embedding": np.asarray(vectors, dtype=np.float32)}


def embed_rowsets(
    rowsets: list[RowSet],
    model_path: str,
    batch_size: int,
    actors: int,
    gpus_per_actor: float,
    cpus_per_actor: int,
    on_done: Callable[[int, np.ndarray], None],
    on_rows: Callable[[int], None] = lambda n: None,
    on_changed: Callable[[int, InputChanged], None] | None = None,
    precision: str = "fp32",
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
        {"model_path": model_path, "batch_size": batch_size, "threads": cpus_per_actor, "precision": precision},
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
