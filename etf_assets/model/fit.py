"""Fit the model and the baselines and evaluate them, on both splits, with same-day and with
lagged (leakage-free) features, without Dagster or MLflow.

`Pipeline.fit` is not called once per model: that would read every row once per fit. One chunked
pass over the rows sums the Gram matrices of all rows and of each split's test rows (a split's
training matrix is the difference), and every model is solved from those (see `least_squares`):
the time-split and random-split fits, the plain linear baseline (the degree-1 terms), the
leakage-free variant (the same on lagged features) and the final fit on all rows; a second pass
scores the test rows. The solutions are the least-squares solutions `Pipeline.fit` finds (the
tests compare them with it), and the registered model equals `make_pipeline().fit(all rows)`.

Everything the passes produce is a sum over rows, so they can run wherever the rows are:
`fit_and_evaluate` runs them in this process over a `TrainingFrame`, `sharded_fit` as tasks over
shards of the rows, and both solve and judge the models with `fit_and_evaluate_passes`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from etf_assets.constants import FEATURE_COLUMNS, TARGET_COLUMN
from etf_assets.model.chunks import chunks
from etf_assets.model.evaluation import (
    FEATURE_SETS,
    FEATURES,
    HOLDOUT_FRACTION,
    LAGGED,
    LINEAR,
    MODELS,
    MOVING_AVG,
    POLY,
    RANDOM_SPLIT,
    SPLITS,
    TIME_SPLIT,
    DayHistogram,
    ErrorSums,
    Evaluation,
    Spread,
    TrainingResult,
)
from etf_assets.model.frame import TrainingFrame, day_to_date
from etf_assets.model.least_squares import (
    Design,
    LeastSquares,
    Moments,
    Standardization,
    fitted_pipeline,
    polynomial_powers,
)
from etf_assets.model.pipeline import DEGREE

PLOT_SAMPLE_ROWS = 50_000
INPUT_EXAMPLE_ROWS = 5

# Feature set -> the Gram matrix of all its usable rows (key None) and of each split's test rows.
Grams = dict[str, dict[str | None, np.ndarray]]
# Feature set -> (the errors of each (split, model), the spread of the actual volumes per split).
Scores = dict[str, tuple[dict[tuple[str, str], ErrorSums], dict[str, Spread]]]
# Feature set -> the weights over the design rows of each (split, model) fit.
Weights = dict[str, dict[tuple[str, str], np.ndarray]]


@dataclass(frozen=True)
class FeatureSet:
    """One feature set (same-day or lagged) over all rows, with the rows it can use (None: all)
    and each split's test rows: the two passes of training over it."""

    features: tuple[np.ndarray, np.ndarray]
    volume: np.ndarray
    usable: np.ndarray | None
    tests: dict[str, np.ndarray]

    def grams(self, design: Design) -> dict[str | None, np.ndarray]:
        """Pass 1: the Gram matrix of all usable rows (key None) and of each split's test rows."""
        (f1, f2), volume = self.features, self.volume
        grams = {part: np.zeros((design.width,) * 2) for part in (None, *self.tests)}
        for part in chunks(len(volume)):
            rows = design.fill(f1[part], f2[part], volume[part])
            if self.usable is not None and not self.usable[part].all():
                rows[:, ~self.usable[part]] = 0.0  # an all-zero row adds nothing
            grams[None] += rows @ rows.T
            for split, test in self.tests.items():
                chosen = rows[:, test[part]]
                grams[split] += chosen @ chosen.T
        return grams

    def scores(
        self, design: Design, weights: dict[tuple[str, str], np.ndarray]
    ) -> tuple[dict[tuple[str, str], ErrorSums], dict[str, Spread]]:
        """Pass 2: the errors of each (split, model) on the split's usable test rows, and the
        spread of the actual volumes there; `weights` from `LeastSquares.weights`."""
        (f1, f2), volume = self.features, self.volume
        errors = {(split, model): ErrorSums() for split in self.tests for model in MODELS}
        spreads = {split: Spread(design.volume_offset) for split in self.tests}
        for part in chunks(len(volume)):
            for split, test in self.tests.items():
                keep = test[part] if self.usable is None else test[part] & self.usable[part]
                t1, t2, actual = f1[part][keep], f2[part][keep], volume[part][keep]
                spreads[split].add(actual)
                rows = design.fill(t1, t2, None)[:-1]
                for model in (POLY, LINEAR):
                    errors[split, model].add(actual, weights[split, model] @ rows)
                errors[split, MOVING_AVG].add(actual, t1)
        return errors, spreads


def feature_sets(frame: TrainingFrame, cutoff: int) -> dict[str, FeatureSet]:
    """Both feature sets of the frame's rows, with the test rows of the time split (dated after
    `cutoff`) and of the random split."""
    tests = {TIME_SPLIT: frame.day > cutoff, RANDOM_SPLIT: frame.random_test}
    lag1, lag2 = frame.lagged
    has_lag = np.isfinite(lag1) & np.isfinite(lag2)
    return {
        FEATURES: FeatureSet(frame.features, frame.volume, None, tests),
        LAGGED: FeatureSet(frame.lagged, frame.volume, has_lag, tests),
    }


@dataclass(frozen=True)
class RowsSummary:
    """What the fit needs to know of the rows before passing over them: the moments of both
    features (the scaler's statistics) and of the volume (the design's offset), the rows per day
    (the time split), and how the rows were read. Summaries of separate row sets add up."""

    features: tuple[Moments, Moments]
    volume: Moments
    days: DayHistogram
    lag_sources: frozenset[str]
    random_split_seed: int
    random_test_fraction: float

    @classmethod
    def of(cls, frame: TrainingFrame) -> RowsSummary:
        """The summary of a frame with rows."""
        return cls(
            (Moments.of(frame.features[0]), Moments.of(frame.features[1])),
            Moments.of(frame.volume),
            DayHistogram.of(frame.day),
            frozenset({frame.lag_source}),
            frame.random_split_seed,
            frame.random_test_fraction,
        )

    def __add__(self, other: RowsSummary) -> RowsSummary:
        split = (self.random_split_seed, self.random_test_fraction)
        if (other.random_split_seed, other.random_test_fraction) != split:
            raise ValueError("rows drawn into different random splits do not add up")
        return RowsSummary(
            (self.features[0] + other.features[0], self.features[1] + other.features[1]),
            self.volume + other.volume,
            self.days + other.days,
            self.lag_sources | other.lag_sources,
            *split,
        )

    @property
    def rows(self) -> int:
        return self.volume.rows


@dataclass(frozen=True)
class HoldoutRows:
    """Some rows of the time holdout (same-day features): for the plots and the input example."""

    volume: np.ndarray
    features: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, frame: TrainingFrame, rows: np.ndarray) -> HoldoutRows:
        x1, x2 = frame.features
        return cls(frame.volume[rows], (x1[rows], x2[rows]))

    @classmethod
    def concatenate(cls, parts: list[HoldoutRows]) -> HoldoutRows:
        return cls(
            np.concatenate([p.volume for p in parts]),
            tuple(np.concatenate([p.features[j] for p in parts]) for j in range(2)),
        )

    def take(self, rows: np.ndarray) -> HoldoutRows:
        return HoldoutRows(self.volume[rows], (self.features[0][rows], self.features[1][rows]))


class RowPasses(Protocol):
    """The passes over the rows of one training (its time split's cutoff fixed), wherever the
    rows are."""

    def grams(self, design: Design) -> Grams:
        """Pass 1: every feature set's Gram matrices (`FeatureSet.grams`) over all rows."""
        ...

    def scores(
        self, design: Design, weights: Weights, holdout_positions: np.ndarray
    ) -> tuple[Scores, HoldoutRows]:
        """Pass 2: every feature set's scores (`FeatureSet.scores`) over all rows, and the time
        holdout's rows at the (sorted) positions in the order the passes hold them."""
        ...


@dataclass(frozen=True)
class Fits:
    """The least-squares solutions from the feature sets' Gram matrices: per feature set, split
    and model (poly, linear) the fit on the split's training rows, and the final model: poly on
    all rows with same-day features."""

    splits: dict[tuple[str, str, str], LeastSquares]
    final: LeastSquares

    @classmethod
    def solve(cls, grams: Grams, design: Design) -> Fits:
        poly_terms = list(range(len(design.powers)))
        linear_terms = [t for t, p in enumerate(design.powers) if p.sum() == 1]
        offset = design.volume_offset
        splits = {
            (features, split, model): LeastSquares.solve(
                grams[features][None] - grams[features][split], terms, offset
            )
            for features in FEATURE_SETS
            for split in SPLITS
            for model, terms in ((POLY, poly_terms), (LINEAR, linear_terms))
        }
        return cls(splits, LeastSquares.solve(grams[FEATURES][None], poly_terms, offset))

    def weights(self, width: int) -> Weights:
        return {
            features: {
                (split, model): self.splits[features, split, model].weights(width)
                for split in SPLITS
                for model in (POLY, LINEAR)
            }
            for features in FEATURE_SETS
        }


class _FramePasses:
    """The passes over a frame in this process. The feature sets' passes are independent numpy
    work (which releases the GIL): one thread each, each with its own buffers."""

    def __init__(self, frame: TrainingFrame, cutoff: int) -> None:
        self.frame = frame
        self.sets = feature_sets(frame, cutoff)

    def grams(self, design: Design) -> Grams:
        with ThreadPoolExecutor(max_workers=len(self.sets), thread_name_prefix="train") as pool:
            passes = {f: pool.submit(rows.grams, design.copy()) for f, rows in self.sets.items()}
            return {f: done.result() for f, done in passes.items()}

    def scores(
        self, design: Design, weights: Weights, holdout_positions: np.ndarray
    ) -> tuple[Scores, HoldoutRows]:
        with ThreadPoolExecutor(max_workers=len(self.sets), thread_name_prefix="train") as pool:
            passes = {
                f: pool.submit(rows.scores, design.copy(), weights[f])
                for f, rows in self.sets.items()
            }
            scores = {f: done.result() for f, done in passes.items()}
        holdout = np.flatnonzero(self.sets[FEATURES].tests[TIME_SPLIT])
        return scores, HoldoutRows.of(self.frame, holdout[holdout_positions])


def _sample(rows: int, size: int, seed: int = 0) -> np.ndarray:
    if rows <= size:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def fit_and_evaluate(
    frame: TrainingFrame, holdout_fraction: float = HOLDOUT_FRACTION, degree: int = DEGREE
) -> TrainingResult:
    """Fit the model on all rows and evaluate it and the baselines on both splits, with same-day
    and with lagged (leakage-free) features.

    Every evaluated fit is trained on the training part of its split and scored on the test part;
    the returned pipeline is fitted on all rows (same-day features, as served).
    """
    if frame.rows == 0:
        raise ValueError("features_table has no rows with both features")
    summary = RowsSummary.of(frame)
    return fit_and_evaluate_passes(
        summary, lambda cutoff: _FramePasses(frame, cutoff), holdout_fraction, degree
    )


def fit_and_evaluate_passes(
    summary: RowsSummary,
    passes_for: Callable[[int], RowPasses],
    holdout_fraction: float = HOLDOUT_FRACTION,
    degree: int = DEGREE,
) -> TrainingResult:
    """`fit_and_evaluate` over rows summarized by `summary`, passed over by `passes_for(the time
    split's cutoff)`.

    The plots and the input example show the time holdout (same-day features, the time-split
    model): a seeded sample of its rows and its first rows, in the order the passes hold them.

    Runs with one BLAS thread: the matrices are seven columns wide, too small to share, and
    OpenBLAS's idle threads spin, which slows training down on a busy machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_and_evaluate_passes(summary, passes_for, holdout_fraction, degree)


def _fit_and_evaluate_passes(
    summary: RowsSummary,
    passes_for: Callable[[int], RowPasses],
    holdout_fraction: float,
    degree: int,
) -> TrainingResult:
    cutoff = summary.days.cutoff(holdout_fraction)
    standardization = Standardization.from_moments(*summary.features)
    design = Design(standardization, polynomial_powers(degree), summary.volume.mean)
    passes = passes_for(cutoff)
    grams = passes.grams(design)
    fits = Fits.solve(grams, design)
    holdout_rows = summary.days.rows_after(cutoff)
    shown = _sample(holdout_rows, PLOT_SAMPLE_ROWS)
    example = np.arange(min(INPUT_EXAMPLE_ROWS, holdout_rows))
    wanted = np.union1d(shown, example)
    scores, holdout = passes.scores(design, fits.weights(design.width), wanted)

    plotted = holdout.take(np.searchsorted(wanted, shown))
    plot_predicted = fits.splits[FEATURES, TIME_SPLIT, POLY].predict(design, *plotted.features)
    x1, x2 = holdout.take(np.searchsorted(wanted, example)).features
    input_example = pd.DataFrame({FEATURE_COLUMNS[0]: x1, FEATURE_COLUMNS[1]: x2})
    return TrainingResult(
        fitted_pipeline(degree, standardization, summary.rows, fits.final),
        _evaluations(grams, scores),
        _params(summary, grams, cutoff, degree, holdout_fraction),
        plotted.volume,
        plot_predicted,
        input_example,
    )


def _rows(gram: np.ndarray) -> int:
    """The rows summed into a Gram matrix (its intercept entry sums ones: exact)."""
    return round(gram[0, 0])


def _evaluations(grams: Grams, scores: Scores) -> list[Evaluation]:
    return [
        Evaluation(
            features,
            split,
            model,
            _rows(grams[features][None] - grams[features][split]),
            scores[features][0][split, model].rows,
            scores[features][0][split, model].metrics(scores[features][1][split]),
        )
        for split in SPLITS
        for features in FEATURE_SETS
        for model in MODELS
    ]


def _params(
    summary: RowsSummary, grams: Grams, cutoff: int, degree: int, holdout_fraction: float
) -> dict[str, str | int | float]:
    holdout_rows = summary.days.rows_after(cutoff)
    random_test_rows = _rows(grams[FEATURES][RANDOM_SPLIT])
    return {
        "degree": degree,
        "features": ", ".join(FEATURE_COLUMNS),
        "target": TARGET_COLUMN,
        "model_trained_on": "all model rows (both splits' train and test parts)",
        "fit_method": "exact least squares from Gram matrices (the solution Pipeline.fit finds)",
        "rows_model": summary.rows,
        "rows_lagged": _rows(grams[LAGGED][None]),
        "lag_source": ", ".join(sorted(summary.lag_sources)),
        "time_split": "holdout = rows dated after the cutoff: the most recent share of rows",
        "time_holdout_fraction": holdout_fraction,
        "time_train_first_date": day_to_date(summary.days.first).isoformat(),
        "time_cutoff_date": day_to_date(cutoff).isoformat(),
        "time_holdout_first_date": day_to_date(summary.days.first_after(cutoff)).isoformat(),
        "time_holdout_last_date": day_to_date(summary.days.last).isoformat(),
        "rows_time_train": summary.rows - holdout_rows,
        "rows_time_holdout": holdout_rows,
        "random_split": "test = hash(symbol, date, seed) % 1e6 < fraction * 1e6 (DuckDB hash)",
        "random_split_seed": summary.random_split_seed,
        "random_test_fraction": summary.random_test_fraction,
        "rows_random_train": summary.rows - random_test_rows,
        "rows_random_test": random_test_rows,
    }
