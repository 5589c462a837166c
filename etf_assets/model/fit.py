"""Fit the model and the baselines and evaluate them, on both splits, with same-day and with
lagged (leakage-free) features, without Dagster or MLflow.

`Pipeline.fit` is not called once per model: that would read every row once per fit. One chunked
pass over the rows sums the Gram matrices of all rows and of each split's test rows (a split's
training matrix is the difference), and every model is solved from those (see `least_squares`):
the time-split and random-split fits, the plain linear baseline (the degree-1 terms), the
leakage-free variant (the same on lagged features) and the final fit on all rows; a second pass
scores the test rows. The solutions are the least-squares solutions `Pipeline.fit` finds (the
tests compare them with it), and the registered model equals `make_pipeline().fit(all rows)`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from etf_assets.constants import FEATURE_COLUMNS, TARGET_COLUMN
from etf_assets.model.chunks import chunks
from etf_assets.model.evaluation import (
    FEATURES,
    HOLDOUT_FRACTION,
    LAGGED,
    LINEAR,
    MODELS,
    MOVING_AVG,
    POLY,
    RANDOM_SPLIT,
    TIME_SPLIT,
    ErrorSums,
    Evaluation,
    Spread,
    TrainingResult,
    time_cutoff,
)
from etf_assets.model.frame import TrainingFrame, day_to_date
from etf_assets.model.least_squares import (
    Design,
    LeastSquares,
    Standardization,
    fitted_pipeline,
    mean_var,
    polynomial_powers,
)
from etf_assets.model.pipeline import DEGREE

PLOT_SAMPLE_ROWS = 50_000
INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class _FeatureSet:
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

    Runs with one BLAS thread: the matrices are seven columns wide, too small to share, and
    OpenBLAS's idle threads spin, which slows training down on a busy machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_and_evaluate(frame, holdout_fraction, degree)


def _fit_and_evaluate(frame: TrainingFrame, holdout_fraction: float, degree: int) -> TrainingResult:
    if frame.rows == 0:
        raise ValueError("features_table has no rows with both features")
    x1, x2 = frame.features
    lag1, lag2 = frame.lagged
    volume = frame.volume
    cutoff = time_cutoff(frame.day, holdout_fraction)
    tests = {TIME_SPLIT: frame.day > cutoff, RANDOM_SPLIT: frame.random_test}
    has_lag = np.isfinite(lag1) & np.isfinite(lag2)

    standardization = Standardization.of(x1, x2)
    powers = polynomial_powers(degree)
    volume_offset = mean_var(volume)[0]
    design = Design(standardization, powers, volume_offset)
    poly_terms = list(range(len(powers)))
    linear_terms = [t for t, p in enumerate(powers) if p.sum() == 1]
    sets = {
        FEATURES: _FeatureSet((x1, x2), volume, None, tests),
        LAGGED: _FeatureSet((lag1, lag2), volume, has_lag, tests),
    }

    # The feature sets' passes are independent numpy work (which releases the GIL): one thread
    # each, each with its own buffers.
    with ThreadPoolExecutor(max_workers=len(sets), thread_name_prefix="train") as pool:
        passes = {f: pool.submit(rows.grams, design.copy()) for f, rows in sets.items()}
        grams = {f: done.result() for f, done in passes.items()}
        fits = {
            (features, split, model): LeastSquares.solve(
                grams[features][None] - grams[features][split], terms, volume_offset
            )
            for features in sets
            for split in tests
            for model, terms in ((POLY, poly_terms), (LINEAR, linear_terms))
        }
        weights = {
            features: {
                (split, model): fits[features, split, model].weights(design.width)
                for split in tests
                for model in (POLY, LINEAR)
            }
            for features in sets
        }
        passes = {
            f: pool.submit(rows.scores, design.copy(), weights[f]) for f, rows in sets.items()
        }
        scores = {f: done.result() for f, done in passes.items()}
    evaluations = [
        Evaluation(
            features,
            split,
            model,
            round(grams[features][None][0, 0] - grams[features][split][0, 0]),
            scores[features][0][split, model].rows,
            scores[features][0][split, model].metrics(scores[features][1][split]),
        )
        for split in tests
        for features in sets
        for model in MODELS
    ]

    # Plots and the input example: time holdout, same-day features, the time-split model.
    holdout_rows = np.flatnonzero(tests[TIME_SPLIT])
    shown = holdout_rows[_sample(len(holdout_rows), PLOT_SAMPLE_ROWS)]
    plot_predicted = fits[FEATURES, TIME_SPLIT, POLY].predict(design, x1[shown], x2[shown])
    example = holdout_rows[:INPUT_EXAMPLE_ROWS]
    input_example = pd.DataFrame({FEATURE_COLUMNS[0]: x1[example], FEATURE_COLUMNS[1]: x2[example]})

    final = LeastSquares.solve(grams[FEATURES][None], poly_terms, volume_offset)
    pipeline = fitted_pipeline(degree, standardization, frame.rows, final)
    params = _params(frame, cutoff, tests[TIME_SPLIT], has_lag, degree, holdout_fraction)
    return TrainingResult(
        pipeline, evaluations, params, volume[shown], plot_predicted, input_example
    )


def _params(
    frame: TrainingFrame,
    cutoff: int,
    holdout: np.ndarray,
    has_lag: np.ndarray,
    degree: int,
    holdout_fraction: float,
) -> dict[str, str | int | float]:
    holdout_rows = int(holdout.sum())
    random_test_rows = int(frame.random_test.sum())
    return {
        "degree": degree,
        "features": ", ".join(FEATURE_COLUMNS),
        "target": TARGET_COLUMN,
        "model_trained_on": "all model rows (both splits' train and test parts)",
        "fit_method": "exact least squares from Gram matrices (the solution Pipeline.fit finds)",
        "rows_model": frame.rows,
        "rows_lagged": int(has_lag.sum()),
        "lag_source": frame.lag_source,
        "time_split": "holdout = rows dated after the cutoff: the most recent share of rows",
        "time_holdout_fraction": holdout_fraction,
        "time_train_first_date": day_to_date(frame.day.min()).isoformat(),
        "time_cutoff_date": day_to_date(cutoff).isoformat(),
        "time_holdout_first_date": day_to_date(frame.day[holdout].min()).isoformat(),
        "time_holdout_last_date": day_to_date(frame.day.max()).isoformat(),
        "rows_time_train": frame.rows - holdout_rows,
        "rows_time_holdout": holdout_rows,
        "random_split": "test = hash(symbol, date, seed) % 1e6 < fraction * 1e6 (DuckDB hash)",
        "random_split_seed": frame.random_split_seed,
        "random_test_fraction": frame.random_test_fraction,
        "rows_random_train": frame.rows - random_test_rows,
        "rows_random_test": random_test_rows,
    }
