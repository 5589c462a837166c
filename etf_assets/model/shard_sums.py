"""The training's tasks on the cluster's workers: each reads one shard of Parquet stage 2 (files
that hold every row of their symbols, so lags stay within the shard) and returns sums over its
training rows, which add up to those over all rows (see `sharded_fit`).

The tasks only read and return: re-running one (a worker died holding it) gives the same sums.
Each reads its shard again rather than keep it between rounds: a round's task may run on any
worker.
"""

from __future__ import annotations

import duckdb
import numpy as np
from threadpoolctl import threadpool_limits

from etf_assets.constants import FEATURES_TABLE
from etf_assets.model.evaluation import FEATURES, TIME_SPLIT
from etf_assets.model.fit import (
    Grams,
    HoldoutRows,
    RowsSummary,
    Scores,
    Weights,
    feature_sets,
)
from etf_assets.model.frame import TrainingFrame, load_training_frame
from etf_assets.model.least_squares import Design
from etf_assets.storage.parquet_stage import define_stage_rows


def shard_frame(files: list[str], seed: int, test_fraction: float) -> TrainingFrame:
    """The training rows of the shard: `load_training_frame` over the shard's rows, read as
    `features_table` (same names and types, so that the random split hashes the same values)."""
    with duckdb.connect() as con:
        define_stage_rows(con)
        con.sql("SELECT * FROM stage_rows($files)", params={"files": files}).create_view(
            FEATURES_TABLE
        )
        return load_training_frame(con, seed=seed, test_fraction=test_fraction)


def summarize_shard(files: list[str], seed: int, test_fraction: float) -> RowsSummary | None:
    """Round 0: the summary of the shard's training rows; None when it has none."""
    frame = shard_frame(files, seed, test_fraction)
    return RowsSummary.of(frame) if frame.rows else None


def shard_grams(
    files: list[str], seed: int, test_fraction: float, cutoff: int, design: Design
) -> Grams:
    """Round 1: every feature set's Gram matrices over the shard's rows."""
    frame = shard_frame(files, seed, test_fraction)
    with threadpool_limits(limits=1, user_api="blas"):
        return {f: rows.grams(design) for f, rows in feature_sets(frame, cutoff).items()}


def shard_scores(
    files: list[str],
    seed: int,
    test_fraction: float,
    cutoff: int,
    design: Design,
    weights: Weights,
    holdout_positions: np.ndarray,
) -> tuple[Scores, HoldoutRows]:
    """Round 2: every feature set's scores over the shard's rows, and the shard's time holdout
    rows at `holdout_positions` of `holdout_in_value_order`."""
    frame = shard_frame(files, seed, test_fraction)
    sets = feature_sets(frame, cutoff)
    with threadpool_limits(limits=1, user_api="blas"):
        scores = {f: rows.scores(design, weights[f]) for f, rows in sets.items()}
    holdout = holdout_in_value_order(frame, sets[FEATURES].tests[TIME_SPLIT])
    return scores, HoldoutRows.of(frame, holdout[holdout_positions])


def holdout_in_value_order(frame: TrainingFrame, holdout: np.ndarray) -> np.ndarray:
    """The frame's holdout rows ordered by (day, features, volume), not as the shard was read
    (which may differ from read to read): every read of the shard, on any worker, gives the same
    rows at the same positions (rows equal in all four are alike)."""
    rows = np.flatnonzero(holdout)
    (x1, x2), volume = frame.features, frame.volume
    return rows[np.lexsort((volume[rows], x2[rows], x1[rows], frame.day[rows]))]
