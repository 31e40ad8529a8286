"""Declared row signals: each per-row signal is declared once by what makes it;
row_scores.parquet's schema, the report's titles and `select`'s rule signals are read from the
declarations, and a signal returned without one is an error, never a column dropped silently."""

import numpy as np
import polars as pl
import pytest

from synque_ray.errors import UserError
from synque_ray.proxies import REGISTRY
from synque_ray.proxies.base import Params, Proxy, ProxyOutput
from synque_ray.report.render import SIGNAL_TITLES
from synque_ray.report.view import row_signals
from synque_ray.rowschema import ROW_SCHEMA, ROW_SIGNALS, RULE_SIGNALS, _by_name
from synque_ray.rowsignals import Signal
from synque_ray.proxy_task import TaskSpec, score_pair
from synque_ray.selection import Rules, _check_rules, parse_drop_rule
from synque_ray.stage.embedding import assemble

LOUDNESS = Signal("loudness", pl.Float64, "loudness", "how loud the row is: high = loud")


def _tiny_proxy(declared: tuple[Signal, ...]) -> Proxy:
    """A proxy of the candidate alone whose rows hold one signal, `loudness` (each row's first value)."""
    def compute(synthetic, real, params, seed, resamples):
        return ProxyOutput(float(synthetic.mean()), rows={"loudness": synthetic[:, 0]})

    return Proxy("tiny", Params, orientation=1.0, compute=compute, uses_real=False, signals=declared)


@pytest.fixture
def embeddings():
    return np.random.default_rng(0).normal(size=(6, 3))


def test_a_proxy_returning_a_signal_it_does_not_declare_fails_its_task(monkeypatch, embeddings):
    monkeypatch.setitem(REGISTRY, "tiny", _tiny_proxy(declared=()))
    with pytest.raises(ValueError) as raised:
        score_pair("c", None, embeddings, None, TaskSpec({"tiny": {}}, None, 0))
    assert str(raised.value) == ("proxy 'tiny' returned the row signal 'loudness' that it does not declare "
                                 "(declared: none); declare each as a rowsignals.Signal")


def test_a_declared_signal_comes_back_with_the_rows(monkeypatch, embeddings):
    monkeypatch.setitem(REGISTRY, "tiny", _tiny_proxy(declared=(LOUDNESS,)))
    part = score_pair("c", None, embeddings, None, TaskSpec({"tiny": {}}, None, 0))
    assert part["rows"]["loudness"] == embeddings[:, 0].tolist()
    assert part["scores"][0]["raw"] == pytest.approx(embeddings.mean())


def test_the_embedding_stage_refuses_a_column_its_schema_does_not_declare():
    alone = {"seed": None, "scores": [], "rows": {"row_index": [0, 1], "duplicate_group": [-1, -1]}}
    pair = {"seed": 42, "scores": [], "rows": {"row_index": [0, 1], "nearest_real_distance": [0.5, 0.7],
                                               "copies_real": [False, True], "loudness": [1.0, 2.0]}}
    with pytest.raises(ValueError, match=r"^the embedding stage, for c, returned the row signal 'loudness' that it "
                                         r"does not declare \(declared: copies_eval, copies_real, "):
        assemble("c", [alone, pair], [42], ["a", "b"])
    del pair["rows"]["loudness"]
    _, rows = assemble("c", [alone, pair], [42], ["a", "b"])
    assert rows.schema == pl.Schema(ROW_SCHEMA) and rows["copies_real"].to_list() == [False, True]


def test_row_schema_is_the_keys_then_the_declared_signals_in_their_committed_order():
    # The order committed results were written in: a change here would make every cached result be redone.
    assert ROW_SCHEMA == {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "text_hash": pl.Utf8,
                          "p_synthetic": pl.Float64, "nearest_real_distance": pl.Float64,
                          "duplicate_group": pl.Int64, "copies_real": pl.Boolean, "copies_eval": pl.Boolean,
                          "text_chars": pl.Int64}
    assert {s.name for proxy in REGISTRY.values() for s in proxy.signals} <= set(ROW_SIGNALS)
    # joined on by the fluency and LENS stages
    assert set(ROW_SIGNALS) - set(ROW_SCHEMA) == {"token_nll", "order_gain", "spelling_surprise", "end_surprise",
                                                  "garbled", "garbled_as", "lens_p_real"}


def test_a_signal_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice or named as a row key: loudness, seed"):
        _by_name((LOUDNESS, LOUDNESS, Signal("seed", pl.Int64, "seed", "a key")))


def test_the_report_titles_and_shows_the_declared_signals():
    assert SIGNAL_TITLES == {name: signal.title for name, signal in ROW_SIGNALS.items()}
    assert SIGNAL_TITLES["p_synthetic"] == "p synthetic (PAD)" and SIGNAL_TITLES["lens_p_real"] == "p real (LENS)"
    rows = pl.DataFrame({"row_index": [0], "text_chars": [4], "lens_p_real": [0.2], "p_synthetic": [0.9],
                         "nearest_real_distance": [None], "mystery": [1.0]})
    assert row_signals(rows) == ["p_synthetic", "lens_p_real"]


def test_select_takes_only_declared_rule_signals():
    assert RULE_SIGNALS == ("p_synthetic", "nearest_real_distance", "copies_real", "copies_eval", "text_chars",
                            "token_nll", "order_gain", "spelling_surprise", "end_surprise", "garbled", "lens_p_real")
    rows = pl.DataFrame({"dataset_id": ["c"], "seed": [42], "row_index": [0], "p_synthetic": [0.4],
                         "copies_real": [False], "mystery": [3.0], "duplicate_group": [-1]})
    _check_rules(Rules((parse_drop_rule("p_synthetic>0.5"), parse_drop_rule("copies_real"))), rows, "rows.parquet")
    with pytest.raises(UserError) as raised:
        _check_rules(Rules((parse_drop_rule("mystery>1"),)), rows, "rows.parquet")
    assert str(raised.value) == "--drop-rows: unknown signal 'mystery' (rows.parquet has: p_synthetic, copies_real)"
