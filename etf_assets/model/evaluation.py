"""How the models are judged: the splits, the metrics summed chunk by chunk, and the result of a
training with every evaluation and its metric names."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from etf_assets.markdown import markdown_table
from etf_assets.model.chunks import chunks

# Time split: the most recent 20% of the rows (by date) are the holdout.
HOLDOUT_FRACTION = 0.2

FEATURES = "same_day"  # the features as the table has them (vol_moving_avg includes the day)
LAGGED = "lagged"  # both features of the symbol's previous trading day: the leakage-free variant
TIME_SPLIT = "time"
RANDOM_SPLIT = "random"
POLY = "poly"
LINEAR = "linear"  # baseline: plain linear regression on the two features
MOVING_AVG = "moving_avg"  # baseline: predict vol_moving_avg
MODELS = (POLY, LINEAR, MOVING_AVG)
FEATURE_SETS = (FEATURES, LAGGED)
SPLITS = (TIME_SPLIT, RANDOM_SPLIT)


def time_cutoff(day: np.ndarray, holdout_fraction: float = HOLDOUT_FRACTION) -> int:
    """The last training day of the time split of the rows dated `day`: see `DayHistogram.cutoff`.

    Raises:
        ValueError: fewer than two distinct days.
    """
    return DayHistogram.of(day).cutoff(holdout_fraction)


@dataclass(frozen=True)
class DayHistogram:
    """How many rows each day from `first` on has: what the time split needs of the dates. The
    histograms of separate row sets add up to that of all their rows."""

    first: int
    counts: np.ndarray  # int64, from `first` to the last day with rows

    @classmethod
    def of(cls, day: np.ndarray) -> DayHistogram:
        first = int(day.min())
        counts = np.zeros(int(day.max()) - first + 1, dtype=np.int64)
        for part in chunks(len(day)):
            counts += np.bincount(day[part] - first, minlength=len(counts))
        return cls(first, counts)

    def __add__(self, other: DayHistogram) -> DayHistogram:
        first = min(self.first, other.first)
        counts = np.zeros(max(self.last, other.last) - first + 1, dtype=np.int64)
        for histogram in (self, other):
            offset = histogram.first - first
            counts[offset : offset + len(histogram.counts)] += histogram.counts
        return DayHistogram(first, counts)

    @property
    def last(self) -> int:
        return self.first + len(self.counts) - 1

    def rows_after(self, day: int) -> int:
        return int(self.counts[max(day - self.first + 1, 0) :].sum())

    def first_after(self, day: int) -> int:
        """The first day after `day` with rows."""
        start = max(day - self.first + 1, 0)
        return self.first + start + int(np.flatnonzero(self.counts[start:])[0])

    def cutoff(self, holdout_fraction: float = HOLDOUT_FRACTION) -> int:
        """The last training day of the time split.

        Rows dated after it form the holdout: the most recent `holdout_fraction` of the rows (a
        little less, as the cutoff day's rows all train), and at least the last day.

        Raises:
            ValueError: fewer than two distinct days.
        """
        present = np.flatnonzero(self.counts)
        if len(present) < 2:
            raise ValueError("a time split needs rows on at least two different dates")
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, (1.0 - holdout_fraction) * cumulative[-1]))
        return self.first + min(index, int(present[-2]))


class Spread:
    """Sum of squared deviations of values from their mean, added chunk by chunk; the values are
    summed relative to `offset` (near their mean) to avoid cancellation."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.rows = 0
        self.sum = self.squares = 0.0

    def add(self, values: np.ndarray) -> None:
        shifted = values - self.offset
        self.rows += len(values)
        self.sum += float(shifted.sum())
        self.squares += float(shifted @ shifted)

    def merge(self, other: Spread) -> None:
        """Add the sums of values added to `other` (with the same offset)."""
        if other.offset != self.offset:
            raise ValueError("spreads summed around different offsets do not add up")
        self.rows += other.rows
        self.sum += other.sum
        self.squares += other.squares

    @property
    def total(self) -> float:
        return self.squares - self.sum**2 / self.rows if self.rows else 0.0


class ErrorSums:
    """Running sums of a model's errors that give MAE, MSE, RMSE and R^2, added chunk by chunk."""

    def __init__(self) -> None:
        self.rows = 0
        self.absolute = self.squared = 0.0

    def add(self, actual: np.ndarray, predicted: np.ndarray) -> None:
        residual = actual - predicted
        self.rows += len(actual)
        self.absolute += float(np.abs(residual).sum())
        self.squared += float(residual @ residual)

    def merge(self, other: ErrorSums) -> None:
        """Add the sums of errors added to `other`."""
        self.rows += other.rows
        self.absolute += other.absolute
        self.squared += other.squared

    def metrics(self, actual: Spread) -> dict[str, float]:
        """R^2 = 1 - SSE/SST, SST around the mean of the actual values (as sklearn's r2_score)."""
        if self.rows == 0:
            raise ValueError("no rows to evaluate")
        mse = self.squared / self.rows
        sst = actual.total
        return {
            "mae": self.absolute / self.rows,
            "mse": mse,
            "rmse": math.sqrt(mse),
            "r2": 1.0 - self.squared / sst if sst > 0 else math.nan,
        }


@dataclass(frozen=True)
class Evaluation:
    """Holdout metrics of one model on one split and feature set."""

    features: str
    split: str
    model: str
    train_rows: int
    test_rows: int
    metrics: dict[str, float]

    @property
    def prefix(self) -> str:
        lagged = "lagged_" if self.features == LAGGED else ""
        return f"{lagged}{self.split}_{self.model}"


@dataclass(frozen=True)
class TrainingResult:
    """What a training produced: the fitted pipeline, every evaluation and what to log with them."""

    pipeline: Pipeline
    evaluations: list[Evaluation]
    params: dict[str, str | int | float]
    plot_actual: np.ndarray
    plot_predicted: np.ndarray
    input_example: pd.DataFrame

    @property
    def metrics(self) -> dict[str, float]:
        """Flat names: `[lagged_]{time|random}_{poly|linear|moving_avg}_{mae|mse|rmse|r2}`."""
        return {f"{e.prefix}_{k}": v for e in self.evaluations for k, v in e.metrics.items()}

    def metrics_markdown(self) -> str:
        """Every evaluation as a markdown table (MAE, RMSE, R^2)."""
        return markdown_table(
            ["features", "split", "model", "MAE", "RMSE", "R^2"],
            [
                (
                    e.features,
                    e.split,
                    e.model,
                    f"{e.metrics['mae']:,.0f}",
                    f"{e.metrics['rmse']:,.0f}",
                    f"{e.metrics['r2']:.4f}",
                )
                for e in self.evaluations
            ],
        )

    def evaluation(self, features: str, split: str, model: str) -> Evaluation:
        return next(
            e
            for e in self.evaluations
            if (e.features, e.split, e.model) == (features, split, model)
        )
