"""row_scores.parquet: its columns (the row keys, then every declared per-row signal) and the table.

Each signal is declared once, by what produces it: a proxy in its `Proxy.signals`, the
embedding stage in `rowsignals.SIGNALS`, the fluency stage in `fluency.SIGNALS`, LENS in
`lens_debias.P_REAL`. This module
collects them, so the schema the embedding stage commits (`ROW_SCHEMA`), the report's
titles and the signals `synque select --drop-rows` takes are all read from one list.
"""

from __future__ import annotations

import polars as pl

from synque_ray.fluency import SIGNALS as FLUENCY_SIGNALS
from synque_ray.lens_debias import P_REAL
from synque_ray.proxies import REGISTRY
from synque_ray.rowsignals import SIGNALS, Signal
from synque_ray.vocabulary import ROW_KEYS

PROXY_SIGNALS = tuple(signal for proxy in REGISTRY.values() for signal in proxy.signals)
EMBEDDING_SIGNALS = (*PROXY_SIGNALS, *SIGNALS)  # what the embedding stage's tasks return, proxies' first
# A committed candidate's row signals, as the embedding stage writes them (the default of every stage).
ROW_SCHEMA = {**ROW_KEYS, **{signal.name: signal.dtype for signal in EMBEDDING_SIGNALS}}


def _by_name(signals: tuple[Signal, ...]) -> dict[str, Signal]:
    """{name: signal}; a name declared twice (or as a key) would make two columns one: refused at import."""
    names = [signal.name for signal in signals]
    repeated = sorted({name for name in names if names.count(name) > 1 or name in ROW_KEYS})
    if repeated:
        raise ValueError(f"row signal declared twice or named as a row key: {', '.join(repeated)}")
    return {signal.name: signal for signal in signals}


# Every signal, in column order.
ROW_SIGNALS: dict[str, Signal] = _by_name((*EMBEDDING_SIGNALS, *FLUENCY_SIGNALS, P_REAL))
SIGNAL_TITLES = {name: signal.title for name, signal in ROW_SIGNALS.items()}
RULE_SIGNALS = tuple(name for name, signal in ROW_SIGNALS.items() if signal.rule)  # --drop-rows takes these
SHOWN_SIGNALS = tuple(name for name, signal in ROW_SIGNALS.items() if signal.shown)  # the report's example rows


def row_scores_table(parts: list[pl.DataFrame], columns: list[pl.DataFrame] | None = None) -> pl.DataFrame:
    """row_scores.parquet: every candidate's per-row signals (`parts`, ROW_SCHEMA), with the
    `columns` of other stages (keyed by dataset_id, seed, row_index; LENS: `lens_p_real`)
    joined on where they exist."""
    table = pl.concat([p.cast(ROW_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=ROW_SCHEMA)
    keys = ["dataset_id", "seed", "row_index"]
    for extra in columns or []:
        table = table.join(extra.cast({"row_index": pl.Int64, "seed": pl.Int64}), on=keys, how="left")
    return table.sort(keys)
