"""embedding.precision: int8 through an ONNX export of the real bundled model, beside fp32."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import synque_ray.onnx_embed as onnx_embed
from synque_ray.config import parse_config
from synque_ray.embed import CPU_PRECISION, EmbeddingCache, embedding_precision, resolve_embedding
from synque_ray.errors import UserError
from synque_ray.models import resolve_model
from synque_ray.onnx_embed import POOLERS, OnnxEncoder, exported_model, l2_normalize, read_head
from synque_ray.storage import Store

HEADLINES = [
    "Shares of the retailer jumped 12% after a strong holiday quarter",
    "Oil prices slide as inventories build for a third straight week",
    "Central bank holds rates steady, signals patience on cuts",
    "Tech giant misses revenue estimates; stock falls in late trading",
    "Small-cap index posts its best month since 2020",
    "Airline warns of weaker summer bookings amid fuel costs",
]
# What the head must reproduce exactly: stray spaces, an empty text, one longer than the 256 tokens kept.
AWKWARD = ["  padded with spaces  ", "", "a", "Markets wobble after the report. " * 60, "Ünïcödé — and emoji 🙂"]


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(bundled_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(bundled_model_path, device="cpu")
    return lambda texts: model.encode(texts, batch_size=4, convert_to_numpy=True)


def raw_config(**embedding):
    return {"name": "t", "output": "/tmp/x", "real": {"path": "r.jsonl", "text": "text"},
            "candidates": {"path": "c", "text": "text"}, "embedding": embedding}


# --------------------------------------------------------------------- the head, in numpy


def test_poolers_match_a_direct_computation():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 4, 3))
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert np.allclose(POOLERS["mean"](hidden, mask), [hidden[0, :3].mean(0), hidden[1, 0]])
    assert np.allclose(POOLERS["max"](hidden, mask), [hidden[0, :3].max(0), hidden[1, 0]])
    assert np.allclose(POOLERS["cls"](hidden, mask), hidden[:, 0])
    unit = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(unit, [[0.6, 0.8], [0.0, 0.0]])


def test_head_is_read_from_the_model_folder(bundled_model_path):
    assert read_head(Path(bundled_model_path)) == onnx_embed.SentenceHead(256, False, "mean", True)


def test_a_model_with_a_dense_layer_is_refused_in_one_line(tmp_path):
    modules = [{"path": "", "type": "sentence_transformers.models.Transformer"},
               {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UserError) as err:
        read_head(tmp_path)
    assert str(err.value) == (f"embedding.precision: int8 supports Transformer → Pooling → Normalize models; "
                              f"{tmp_path} has Transformer → Pooling → Dense (use precision: fp32)")


# --------------------------------------------------------------------- the real bundled model


def test_fp32_export_reproduces_sentence_transformers(bundled_model_path, onnx_root, reference):
    """Same graph, no quantization: any gap would be the hand-written head (pooling, truncation, norm)."""
    encoder = OnnxEncoder(bundled_model_path, threads=1, quantize=False, root=onnx_root)
    texts = HEADLINES + AWKWARD
    assert np.abs(encoder.encode(texts, batch_size=3) - reference(texts)).max() < 1e-5


def test_int8_embeddings_stay_close_to_fp32(bundled_model_path, onnx_root, reference):
    """Measured on these headlines: cosines .9995 to .9997 in blocks of 32 (the sentiment benchmark: mean
    .9997, min .9993); .990 to .994 with ONNX Runtime's quantize_dynamic (one activation scale per batch)
    and .997 to .998 with one per token, both of which this bar of .999 refuses."""
    vectors = OnnxEncoder(bundled_model_path, threads=1, root=onnx_root).encode(HEADLINES, batch_size=4)
    cosines = (vectors * reference(HEADLINES)).sum(axis=1)
    assert vectors.shape == (len(HEADLINES), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert cosines.min() >= 0.999, cosines
    assert cosines.max() < 0.99999  # really quantized, not the fp32 graph under another name


def test_a_text_embeds_the_same_alone_or_in_any_batch(bundled_model_path, onnx_root):
    """Each token is quantized on its own scales, so a row's int8 vector never depends on which rows
    share its batch (with one scale per batch, the same headline moved by up to .04 per coordinate)."""
    encoder = OnnxEncoder(bundled_model_path, threads=1, root=onnx_root)
    texts = HEADLINES + AWKWARD
    alone = np.stack([encoder.encode([text], 1)[0] for text in texts])
    for batch_size in (3, len(texts)):
        assert np.abs(encoder.encode(texts, batch_size) - alone).max() < 1e-6


def test_the_export_is_made_once_and_reused(bundled_model_path, onnx_root, monkeypatch):
    first = exported_model(Path(bundled_model_path), onnx_root)
    made = first.stat().st_mtime_ns

    def no_second_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_embed, "_export", no_second_export)
    again = OnnxEncoder(bundled_model_path, threads=1, root=onnx_root)
    assert exported_model(Path(bundled_model_path), onnx_root) == first
    assert first.stat().st_mtime_ns == made
    assert again.encode(HEADLINES[:2], 2).shape == (2, 384)
    assert not [p for p in onnx_root.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------- the int8 graph


def one_product(weight: np.ndarray, activation_product: bool = False):
    """A one-node ONNX model: y = x @ weight (stored), or y = x @ z (two inputs) when activation_product."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", k])]
    if activation_product:
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [k, n]))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "z" if activation_product else "w"], ["y"],
                                                name="layer/dense/MatMul")], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", n])],
                              [] if activation_product else [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_embed.OPSET)])
    onnx.checker.check_model(model)
    return model


def run_model(model, **feeds) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_weights_are_stored_in_blocks_of_their_own_scale():
    """Column by column, 32 values along the summed axis to a block; K padded with zeros to whole blocks."""
    weight = np.zeros((40, 2), np.float32)
    weight[0, 0], weight[1, 0], weight[35, 0] = 0.5, -0.25, 2.0  # column 0: block 0 peaks at .5, block 1 at 2
    values, scales = onnx_embed.quantize_blocks(weight, block=32)
    assert values.shape == (2, 2, 32) and values.dtype == np.uint8 and scales.dtype == np.float32
    assert np.allclose(scales, [0.5 / 127, 2.0 / 127, 1.0, 1.0])  # (column, block) order; all-zero blocks: 1
    assert values[0, 0, :2].tolist() == [255, 64]  # 127 + 128; -63.5 → -64 (round half to even) + 128
    assert values[0, 1, 3] == 255 and (values[1] == 128).all()  # row 35 is block 1's 4th; zeros sit at 128


def test_int8_product_is_blockwise_quantization():
    """The rewritten graph against numpy: every 32 values of a token share one scale, max |x| / 127, and
    every 32 of a weight column theirs; the int8 products of the blocks are scaled back and summed."""
    rng = np.random.default_rng(3)
    k, n, block = 70, 6, 32  # 70: the last block is padded
    weight = rng.normal(size=(k, n)).astype(np.float32)
    x = rng.normal(size=(2, 5, k)).astype(np.float32)
    x[0, 0] *= 50  # an outlier token: with one scale per tensor it would coarsen all the others
    quantized = onnx_embed.quantize_graph(one_product(weight))
    assert [node.op_type for node in quantized.graph.node] == ["MatMulNBits"]

    blocks = -(-k // block)
    padded = np.zeros((2, 5, blocks * block), np.float32)
    padded[..., :k] = x
    xb = padded.reshape(2, 5, blocks, block)
    x_scale = np.abs(xb).max(axis=-1, keepdims=True) / 127
    wb = np.zeros((blocks * block, n), np.float32)
    wb[:k] = weight
    wb = wb.T.reshape(n, blocks, block)
    w_scale = np.abs(wb).max(axis=-1, keepdims=True) / 127
    expected = np.einsum("tkc,nkc->tn", (np.rint(xb / x_scale) * x_scale).reshape(-1, blocks, block),
                         np.rint(wb / w_scale) * w_scale).reshape(2, 5, n)
    got = run_model(quantized, x=x)
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()
    # and close to the float product on every token, the outlier's neighbours included
    relative = np.abs(got - x @ weight).max(axis=-1) / np.abs(x @ weight).max(axis=-1)
    assert relative.max() < 0.03


def test_products_of_two_activations_stay_float():
    model = one_product(np.zeros((4, 3), np.float32), activation_product=True)
    assert [node.op_type for node in onnx_embed.quantize_graph(model).graph.node] == ["MatMul"]


# --------------------------------------------------------------------- the cache of exports


def fake_model(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(weights)
    return folder


def test_the_export_key_follows_the_model_content(tmp_path):
    a = fake_model(tmp_path / "a", b"one")
    same = fake_model(tmp_path / "elsewhere", b"one")
    changed = fake_model(tmp_path / "b", b"two")
    assert onnx_embed.export_key(a) == onnx_embed.export_key(same)
    assert onnx_embed.export_key(a) != onnx_embed.export_key(changed)
    assert onnx_embed.export_key(a) != onnx_embed.export_key(a, quantize=False)


def test_concurrent_callers_export_once(tmp_path, monkeypatch):
    model = fake_model(tmp_path / "model", b"w")
    calls = []

    def slow_export(folder, out, quantize, root):
        calls.append(folder)
        time.sleep(0.5)
        (out / "model.onnx").write_bytes(b"onnx")

    monkeypatch.setattr(onnx_embed, "_export", slow_export)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(exported_model(model, tmp_path / "root")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(paths)) == 1 and paths[0].read_bytes() == b"onnx"


def test_an_export_finished_first_by_another_machine_is_used(tmp_path, monkeypatch):
    """On a folder shared by several machines (a cluster's volume) the lock is per machine: when
    another machine renames its export into place first, ours is dropped and theirs is used."""
    model = fake_model(tmp_path / "model", b"w")
    root = tmp_path / "root"

    def export_while_another_machine_finishes(folder, out, quantize, root):
        (out / "model.onnx").write_bytes(b"ours")
        theirs = root / onnx_embed.export_key(folder, quantize)
        theirs.mkdir()
        (theirs / "model.onnx").write_bytes(b"theirs")

    monkeypatch.setattr(onnx_embed, "_export", export_while_another_machine_finishes)
    path = exported_model(model, root)
    assert path.read_bytes() == b"theirs"
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [path.parent.name]


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model = fake_model(tmp_path / "model", b"w")

    def broken_export(folder, out, quantize, root):
        (out / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_embed, "_export", broken_export)
    with pytest.raises(RuntimeError, match="disk full"):
        exported_model(model, tmp_path / "root")
    assert [p.name for p in (tmp_path / "root").iterdir() if not p.name.endswith(".lock")] == []


# --------------------------------------------------------------------- config and keys


def test_precision_and_backend_are_part_of_the_embedding_key():
    fp32, int8 = (resolve_embedding(parse_config(raw_config(precision=p))) for p in ("fp32", "int8"))
    on_gpus = resolve_embedding(parse_config({**raw_config(precision="fp32"), "resources": {"embed_gpus": 1}}))
    assert fp32.path == int8.path == on_gpus.path
    assert (fp32.backend, int8.backend, on_gpus.backend) == ("onnxruntime", "onnxruntime", "sentence-transformers")
    # fp32 on sentence-transformers keeps the bare id: caches made before precisions existed stay valid
    assert on_gpus.id.startswith("bundled-minilm@") and "#" not in on_gpus.id
    assert fp32.id == f"{on_gpus.id}#fp32-onnxruntime-r{onnx_embed.RECIPE}"
    assert int8.id == f"{on_gpus.id}#int8-onnxruntime-r{onnx_embed.RECIPE}"
    store = Store("/tmp/unused")
    assert len({EmbeddingCache(store, model.id).prefix for model in (fp32, int8, on_gpus)}) == 3


def test_a_model_the_export_cannot_reproduce_runs_fp32_on_torch_and_refuses_int8(tmp_path):
    model = tmp_path / "dense-model"
    model.mkdir()
    modules = [{"path": "", "type": "sentence_transformers.models.Transformer"},
               {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    (model / "modules.json").write_text(json.dumps(modules))
    fp32 = resolve_embedding(parse_config(raw_config(model=str(model), precision="fp32")))
    assert fp32.backend == "sentence-transformers"
    assert fp32.id == resolve_model(str(model), "embedding.model")[1]  # the model's own id, nothing added
    with pytest.raises(UserError, match="int8 supports Transformer → Pooling → Normalize models"):
        resolve_embedding(parse_config(raw_config(model=str(model), precision="int8")))


def test_unset_precision_is_the_cpu_default_and_fp32_on_gpus():
    assert embedding_precision(parse_config(raw_config())) == CPU_PRECISION
    on_gpus = parse_config({**raw_config(), "resources": {"embed_gpus": 1}})
    assert embedding_precision(on_gpus) == "fp32"


def test_a_bad_precision_is_one_line():
    with pytest.raises(UserError) as err:
        parse_config(raw_config(precision="int4"))
    assert str(err.value) == "config: embedding.precision: Input should be 'fp32' or 'int8'"


def test_int8_on_gpus_is_one_line():
    with pytest.raises(UserError) as err:
        parse_config({**raw_config(precision="int8"), "resources": {"embed_gpus": 1}})
    assert str(err.value) == ("config: embedding.precision: int8 runs on CPUs only; with resources.embed_gpus > 0 "
                              "use fp32 or leave precision unset")


# --------------------------------------------------------------------- through the engine


@pytest.mark.ray
def test_engine_embeds_at_the_configured_precision(ray_session, tmp_path, bundled_model_path):
    """An int8 run writes int8 entries that an fp32 run does not reuse, and its scores are those of
    the int8 encoder's embeddings (the actors' export is the machine's, made once)."""
    import polars as pl

    import synque_ray
    from synque_ray.demo import write_demo_data
    from synque_ray.proxies.mdm import mdm_of_rows
    from synque_ray.reading import read_texts

    write_demo_data(tmp_path / "data", n_candidates=2, rows=30, pool_rows=40)
    base = {"name": "int8", "real": {"path": str(tmp_path / "data/real/pool.jsonl"), "text": "text",
                                     "sample_size": 20},
            "candidates": {"path": str(tmp_path / "data/candidates"), "text": "text"},
            "cache_dir": str(tmp_path / "cache"), "proxies": ["mdm"], "resources": {"embed_actors": 1}}
    int8 = {**base, "output": str(tmp_path / "int8"), "embedding": {"precision": "int8"}}
    run = synque_ray.score(int8)
    assert run.summary is not None and run.summary.counts["rows_embedded"] == 2 * 30 + 20
    assert run.info["models"]["embedding"] == resolve_embedding(parse_config(int8)).id

    candidate = sorted((tmp_path / "data/candidates").iterdir())[0]
    encoder = OnnxEncoder(bundled_model_path, threads=1, root=onnx_embed.cache_root())
    expected = mdm_of_rows(encoder.encode(read_texts(candidate, "text"), 256), k=3, rows=20)
    got = run.scores.filter((pl.col("dataset_id") == candidate.stem) & (pl.col("proxy") == "mdm"))["raw"][0]
    assert got == pytest.approx(expected, rel=1e-4)

    fp32 = synque_ray.score({**base, "output": str(tmp_path / "fp32"), "embedding": {"precision": "fp32"}}).summary
    assert fp32 is not None and fp32.counts["rows_embedded"] == 2 * 30 + 20  # nothing of the int8 entries reused


def test_the_int8_export_is_quantized_from_the_fp32_one_without_torch(bundled_model_path, tmp_path):
    """Once the fp32 export is on the machine, the int8 one is its graph through quantize_graph: made in
    about a second by a process that imports neither torch nor transformers (a fresh one, as an actor)."""
    import os
    import subprocess
    import sys

    import onnx

    root = tmp_path / "onnx"
    plain = exported_model(Path(bundled_model_path), root, quantize=False)
    code = ("import sys; from pathlib import Path; from synque_ray.onnx_embed import exported_model; "
            f"print(exported_model(Path({bundled_model_path!r}), Path({str(root)!r}))); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, SYNQUE_ONNX_CACHE=str(root)))
    path, imported = done.stdout.split("\n")[-3:-1]
    assert imported == "False False"
    made = onnx.load(path)
    expected = onnx_embed.quantize_graph(onnx.load(str(plain)))
    assert made.graph.SerializeToString() == expected.graph.SerializeToString()
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == sorted(
        [onnx_embed.export_key(Path(bundled_model_path), quantize) for quantize in (False, True)])


def test_an_fp32_actor_on_cpus_never_imports_torch(bundled_model_path, onnx_root):
    """The point of fp32 on ONNX Runtime: an embedding actor starts in a fraction of a second instead of
    importing torch and transformers (6-7 s, BENCHMARKS.md). A fresh process, as a Ray worker is."""
    import os
    import subprocess
    import sys

    exported_model(Path(bundled_model_path), onnx_root, quantize=False)  # made once per machine, before
    code = ("import sys; from synque_ray.embed import Embedder; "
            f"e = Embedder({bundled_model_path!r}, 8, 1, 'fp32', 'onnxruntime'); "
            "out = e({'set': [0, 0], 'row': [0, 1], 'text': ['a headline', 'another one']}); "
            "print(out['embedding'].shape, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, SYNQUE_ONNX_CACHE=str(onnx_root)))
    assert done.stdout.split("\n")[-2] == "(2, 384) False False"
