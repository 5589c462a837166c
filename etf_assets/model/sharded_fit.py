"""`fit_and_evaluate` on a Dask cluster: the workers pass over the rows of Parquet stage 2, shard
by shard, and this process only adds up their sums and solves.

Stage 2 holds each symbol's rows in exactly one file, so a shard is a file (or a group of small
files) and each symbol's lag is taken within its shard. Three rounds of tasks, one task per shard,
each reading its shard (`shard_sums`): the summaries (row count, the moments of the features and
the volume, the rows per day), which give the scaler's statistics, the design's offset and the
time split's cutoff; the Gram matrices; the scores. Everything summed is a sum over rows, so the
result is that of `fit_and_evaluate` on the same rows, to rounding.

One difference: the plots and the input example show the time holdout's rows in another order
(shard by shard in file name order, each shard's rows by day, features and volume, where the
local fit keeps the warehouse's storage order): the same seeded positions pick other rows when the
holdout has more rows than the plots show, and the input example's rows are the first ones of
that order.
"""

from __future__ import annotations

import duckdb
import numpy as np

from etf_assets.cluster.tasks import Cluster
from etf_assets.model import sql
from etf_assets.model.evaluation import FEATURE_SETS, HOLDOUT_FRACTION, TrainingResult
from etf_assets.model.fit import (
    Grams,
    HoldoutRows,
    RowsSummary,
    Scores,
    Weights,
    fit_and_evaluate_passes,
)
from etf_assets.model.frame import RANDOM_SPLIT_SEED, RANDOM_TEST_FRACTION
from etf_assets.model.least_squares import Design
from etf_assets.model.pipeline import DEGREE
from etf_assets.model.shard_sums import shard_grams, shard_scores, summarize_shard

# About as many rows as a file of stage 2 written by a full features run holds: a task's frame
# then takes some 100 MB.
SHARD_ROWS = 2_000_000


def fit_and_evaluate_on_cluster(
    cluster: Cluster,
    stage2_files: list[str],
    holdout_fraction: float = HOLDOUT_FRACTION,
    degree: int = DEGREE,
    seed: int = RANDOM_SPLIT_SEED,
    test_fraction: float = RANDOM_TEST_FRACTION,
    shard_rows: int = SHARD_ROWS,
) -> TrainingResult:
    """`fit_and_evaluate(load_training_frame(warehouse))`, with the rows read from the Parquet
    files of stage 2 (which hold the rows of `features_table`) by tasks on `cluster`.

    Args:
        stage2_files: every Parquet file of stage 2.
        shard_rows: files are grouped into shards of at most this many rows (a larger file is a
            shard of its own); one task per shard and round.

    Raises:
        ValueError: no row has both features, or the rows are on fewer than two dates.
    """
    shards = shards_of(stage2_files, shard_rows, cluster.min_tasks)
    found = cluster.run(
        "train_summaries", summarize_shard, [(files, seed, test_fraction) for files in shards]
    )
    with_rows = [
        (files, summary)
        for files, summary in zip(shards, found, strict=True)
        if summary is not None
    ]
    if not with_rows:
        raise ValueError("features_table has no rows with both features")
    summaries = [summary for _, summary in with_rows]
    return fit_and_evaluate_passes(
        sum(summaries[1:], summaries[0]),
        lambda cutoff: _ShardPasses(cluster, with_rows, (seed, test_fraction), cutoff),
        holdout_fraction,
        degree,
    )


def shards_of(files: list[str], shard_rows: int, min_shards: int = 1) -> list[list[str]]:
    """The files with rows, in name order, in consecutive groups of at most `shard_rows` rows,
    fewer when that makes fewer than `min_shards` groups (a larger file alone). The row counts
    come from the files' footers."""
    with duckdb.connect() as con:
        count = sql.load("count_parquet_rows")
        rows = {name: con.execute(count, {"file": name}).fetchone()[0] for name in files}
    shard_rows = min(shard_rows, max(1, -(-sum(rows.values()) // min_shards)))
    shards: list[list[str]] = []
    in_shard = 0
    for name in sorted(files):
        if rows[name] == 0:
            continue
        if not shards or in_shard + rows[name] > shard_rows:
            shards.append([])
            in_shard = 0
        shards[-1].append(name)
        in_shard += rows[name]
    return shards


class _ShardPasses:
    """The passes as rounds of tasks, one per shard with rows; the sums added up here. The time
    holdout's rows are ordered shard by shard (each as `holdout_in_value_order`)."""

    def __init__(
        self,
        cluster: Cluster,
        shards: list[tuple[list[str], RowsSummary]],
        split: tuple[int, float],
        cutoff: int,
    ) -> None:
        self.cluster, self.split, self.cutoff = cluster, split, cutoff
        self.files = [files for files, _ in shards]
        holdout_rows = [summary.days.rows_after(cutoff) for _, summary in shards]
        self.holdout_starts = np.cumsum([0, *holdout_rows])

    def grams(self, design: Design) -> Grams:
        per_shard = self.cluster.run(
            "train_grams",
            shard_grams,
            [(files, *self.split, self.cutoff, design) for files in self.files],
        )
        return {
            features: {
                part: np.sum([grams[features][part] for grams in per_shard], axis=0)
                for part in per_shard[0][features]
            }
            for features in FEATURE_SETS
        }

    def scores(
        self, design: Design, weights: Weights, holdout_positions: np.ndarray
    ) -> tuple[Scores, HoldoutRows]:
        bounds = np.searchsorted(holdout_positions, self.holdout_starts)
        per_shard = self.cluster.run(
            "train_scores",
            shard_scores,
            [
                (
                    files,
                    *self.split,
                    self.cutoff,
                    design,
                    weights,
                    holdout_positions[bounds[n] : bounds[n + 1]] - self.holdout_starts[n],
                )
                for n, files in enumerate(self.files)
            ],
        )
        scores, _ = per_shard[0]
        for more, _ in per_shard[1:]:
            for features, (errors, spreads) in more.items():
                for key, sums in errors.items():
                    scores[features][0][key].merge(sums)
                for split, spread in spreads.items():
                    scores[features][1][split].merge(spread)
        return scores, HoldoutRows.concatenate([rows for _, rows in per_shard])
