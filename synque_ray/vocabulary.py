"""The words every floor of synque_ray shares: the tables' schemas and columns, and the names of a
run's output files (docs/architecture.md, "The floors").

The bottom floor: it imports nothing of the package, so any module may read it, and a name or a
column spelled here is spelled once. What a table *holds* is computed elsewhere (`reduce` ranks,
the stages commit results); this module only says what the tables are called and what their
columns are. row_scores.parquet's signal columns are not here: each signal is declared by what
produces it, and `rowschema` collects them after the keys below.
"""

from __future__ import annotations

import polars as pl

# scores.parquet: one (candidate, proxy, seed) result. raw: the proxy's value as its paper defines it;
# score: the same oriented so that higher is always better (the ensemble's: minus its mean rank).
SCORE_SCHEMA = {"dataset_id": pl.Utf8, "proxy": pl.Utf8, "seed": pl.Int64, "raw": pl.Float64, "score": pl.Float64}
# A committed result: the score, its bootstrap replicates (oriented like `score`), its error, its cost.
RESULT_SCHEMA = {**SCORE_SCHEMA, "replicates": pl.List(pl.Float64), "error": pl.Utf8, "seconds": pl.Float64}
# rankings.parquet's columns from the reduction, in order (the findings' columns follow them).
RANKING_COLUMNS = ["dataset_id", "proxy", "score_mean", "score_std", "rank", "rank_low", "rank_high",
                   "tied_with_best", "p_best", "p_top"]
# row_scores.parquet's keys: one row of one candidate at one seed; its signal columns follow them.
ROW_KEYS = {"dataset_id": pl.Utf8, "seed": pl.Int64, "row_index": pl.Int64, "text_hash": pl.Utf8}

# A run's output set (docs/storage.md): written under runs/<stamp>/, shown at the top level once published.
SCORES_FILE = "scores.parquet"
RANKINGS_FILE = "rankings.parquet"
ROW_SCORES_FILE = "row_scores.parquet"
RUN_FILE = "run.json"
REPORT_FILE = "report.html"
EVALUATION_FILE = "evaluation.json"
SET_FILES = (SCORES_FILE, RANKINGS_FILE, ROW_SCORES_FILE, RUN_FILE, REPORT_FILE, EVALUATION_FILE)
# LENS's own tables, also in the set (any `lens_*.parquet` is: see `runfiles.is_set_file`).
LENS_JUDGEMENTS_FILE = "lens_judgements.parquet"
LENS_SCORES_FILE = "lens_scores.parquet"
