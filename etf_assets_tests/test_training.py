"""The model package (frame, evaluation, fit, report, plots) on generated data, checked against
independent computations: pandas for the lag, scikit-learn's own Pipeline.fit and sklearn.metrics
for every fit and metric, hand formulas."""

from __future__ import annotations

import datetime as dt
import io
import math
import pickle
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.utils.validation import check_is_fitted

from etf_assets.constants import FEATURE_COLUMNS
from etf_assets.model import evaluation, fit, plots
from etf_assets.model.frame import (
    LAG_FROM_STORAGE_ORDER,
    LAG_FROM_WINDOW,
    TrainingFrame,
    load_training_frame,
    profile_features,
)
from etf_assets.model.pipeline import make_pipeline
from etf_assets.model.report import describe_run
from etf_assets_tests.model_fixtures import (  # noqa: F401  (features_db is a fixture)
    EXPECTED_METRIC_NAMES,
    features_db,
    features_frame,
    true_volume,
    write_features_table,
)

FEATURES = list(FEATURE_COLUMNS)


def _load(database: Path, **kwargs: object) -> TrainingFrame:
    with duckdb.connect(str(database), read_only=True) as con:
        return load_training_frame(con, **kwargs)


@pytest.fixture(scope="module")
def frame(features_db: Path) -> TrainingFrame:  # noqa: F811
    return _load(features_db)


@pytest.fixture(scope="module")
def result(frame: TrainingFrame) -> evaluation.TrainingResult:
    return fit.fit_and_evaluate(frame)


@pytest.fixture(scope="module")
def table(features_db: Path) -> pd.DataFrame:  # noqa: F811
    """features_table with the previous row's features per symbol, computed by pandas, and the
    random-split flag evaluated by DuckDB directly (the definition, not the loader)."""
    with duckdb.connect(str(features_db), read_only=True) as con:
        df = con.execute(
            """SELECT *, hash(symbol, date, 42) % 1000000 < 200000 AS random_test
               FROM features_table ORDER BY symbol, date"""
        ).df()
    for column in FEATURES:
        df[f"lag_{column}"] = df.groupby("symbol")[column].shift(1)
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return df.dropna(subset=FEATURES).reset_index(drop=True)


def _sklearn_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    mse = skm.mean_squared_error(actual, predicted)
    return {
        "mae": skm.mean_absolute_error(actual, predicted),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": skm.r2_score(actual, predicted),
    }


def _assert_metrics(result: evaluation.TrainingResult, prefix: str, expected: dict) -> None:
    for name, value in expected.items():
        assert result.metrics[f"{prefix}_{name}"] == pytest.approx(value, rel=1e-9), name


# --- loading -------------------------------------------------------------------------------


def test_load_keeps_rows_with_both_features_and_lags_within_each_symbol(tmp_path: Path) -> None:
    days = pd.bdate_range("2020-01-01", periods=32).date
    rows = []
    for symbol, count in (("NA", 32), ("B.X", 30)):
        for i in range(count):
            known = i >= 29
            rows.append(
                {
                    "symbol": symbol,
                    "security_name": None,
                    "date": days[i],
                    **dict.fromkeys(("open", "high", "low", "close", "adj_close"), 10.0 + i),
                    "volume": 1_000 * (i + 1) + (7 if symbol == "NA" else 0),
                    "vol_moving_avg": 100.0 * i if known else np.nan,
                    "adj_close_rolling_med": 0.5 * i if known else np.nan,
                }
            )
    for name, order, source in (
        ("sorted", pd.DataFrame(rows), LAG_FROM_STORAGE_ORDER),
        # In any order, the 4 rows with features are at most 4 runs: few enough to chain.
        (
            "shuffled",
            pd.DataFrame(rows).sample(frac=1.0, random_state=3),
            LAG_FROM_STORAGE_ORDER,
        ),
        ("dates descending", pd.DataFrame(rows[::-1]), LAG_FROM_STORAGE_ORDER),
    ):
        loaded = _load(write_features_table(tmp_path / f"{name}.duckdb", order))
        assert loaded.lag_source == source
        _check_tiny_frame(loaded, days)


def _check_tiny_frame(loaded: TrainingFrame, days: np.ndarray) -> None:
    got = pd.DataFrame(
        {
            "day": loaded.day,
            "volume": loaded.volume,
            "vma": loaded.features[0],
            "lag_vma": loaded.lagged[0],
            "lag_acrm": loaded.lagged[1],
        }
    ).sort_values(["volume"])
    # NA: rows 30..32 have features; B.X: row 30 only.
    assert got["volume"].tolist() == [30_000.0, 30_007.0, 31_007.0, 32_007.0]
    epoch = dt.date(1970, 1, 1)
    assert got["day"].tolist() == [(days[i] - epoch).days for i in (29, 29, 30, 31)]
    # The first row with features has none the day before; then the previous row's values.
    assert np.isnan(got["lag_vma"].iloc[0]) and np.isnan(got["lag_vma"].iloc[1])
    assert got["lag_vma"].iloc[2:].tolist() == [2_900.0, 3_000.0]
    assert got["lag_acrm"].iloc[2:].tolist() == [14.5, 15.0]
    assert loaded.day.dtype == np.int32 and loaded.random_test.dtype == bool


def test_lagged_features_match_pandas_shift(frame: TrainingFrame, table: pd.DataFrame) -> None:
    got = pd.DataFrame(
        {"day": frame.day, "vma": frame.features[0], "lag": frame.lagged[0]}
    ).sort_values(["day", "vma"])
    epoch = dt.date(1970, 1, 1)
    want = pd.DataFrame(
        {
            "day": [(d - epoch).days for d in table["date"]],
            "vma": table["vol_moving_avg"],
            "lag": table["lag_vol_moving_avg"],
        }
    ).sort_values(["day", "vma"])
    assert len(got) == len(want) == frame.rows
    np.testing.assert_array_equal(got["day"].to_numpy(), want["day"].to_numpy())
    np.testing.assert_array_equal(got["lag"].to_numpy(), want["lag"].to_numpy())


def test_random_split_is_seeded_order_independent_and_a_fifth(
    features_db: Path,  # noqa: F811
    frame: TrainingFrame,
    tmp_path: Path,
) -> None:
    def flags(loaded: TrainingFrame) -> list[tuple]:
        return sorted(zip(loaded.day, loaded.volume, loaded.random_test, strict=True))

    assert 0.17 < frame.random_test.mean() < 0.23
    with duckdb.connect(str(features_db), read_only=True) as con:
        reversed_rows = con.execute("SELECT * FROM features_table ORDER BY date DESC").df()
    reordered = _load(write_features_table(tmp_path / "reordered.duckdb", reversed_rows))
    assert flags(reordered) == flags(frame)
    assert flags(_load(features_db, seed=7)) != flags(frame)


def test_snapshot_id_follows_content_not_order(features_db: Path, tmp_path: Path) -> None:  # noqa: F811
    with duckdb.connect(str(features_db), read_only=True) as con:
        profile = profile_features(con)
        shuffled = con.execute("SELECT * FROM features_table ORDER BY random()").df()
    assert profile.rows == len(shuffled)
    other = write_features_table(tmp_path / "shuffled.duckdb", shuffled)
    with duckdb.connect(str(other)) as con:
        assert profile_features(con) == profile
        con.execute("UPDATE features_table SET volume = volume + 1 WHERE rowid = 100")
        assert profile_features(con).snapshot_id != profile.snapshot_id


def _sorted_frame(loaded: TrainingFrame) -> pd.DataFrame:
    columns = {
        "day": loaded.day,
        "vma": loaded.features[0],
        "acrm": loaded.features[1],
        "lag_vma": loaded.lagged[0],
        "lag_acrm": loaded.lagged[1],
        "volume": loaded.volume,
        "random_test": loaded.random_test,
    }
    return pd.DataFrame(columns).sort_values(["day", "vma"]).reset_index(drop=True)


def test_storage_order_and_window_lags_give_the_same_frame(
    features_db: Path,  # noqa: F811
    frame: TrainingFrame,
    tmp_path: Path,
) -> None:
    # The fixture is written symbol by symbol in date order, as features_table is.
    assert frame.lag_source == LAG_FROM_STORAGE_ORDER
    with duckdb.connect(str(features_db), read_only=True) as con:
        rows = con.execute("SELECT * FROM features_table").df()
    # Every symbol stored as two runs, as DuckDB's parallel writers may store it: the earlier
    # halves of all symbols, then the later halves; or the later halves first.
    by_symbol = rows.sort_values(["symbol", "date"])
    later = (
        by_symbol.groupby("symbol").cumcount()
        >= by_symbol.groupby("symbol")["date"].transform("size") // 2
    )
    for name, order in (
        ("split", pd.concat([by_symbol[~later], by_symbol[later]])),
        ("split, later runs first", pd.concat([by_symbol[later], by_symbol[~later]])),
    ):
        other = _load(write_features_table(tmp_path / f"{name}.duckdb", order))
        assert other.lag_source == LAG_FROM_STORAGE_ORDER, name
        pd.testing.assert_frame_equal(_sorted_frame(other), _sorted_frame(frame))
    # Each symbol's rows together but dates descending; then rows interleaved across symbols.
    for name, order in (
        ("descending", rows.sort_values(["symbol", "date"], ascending=[True, False])),
        ("interleaved", rows.sort_values(["date", "symbol"])),
    ):
        other = _load(write_features_table(tmp_path / f"{name}.duckdb", order))
        assert other.lag_source == LAG_FROM_WINDOW, name
        pd.testing.assert_frame_equal(_sorted_frame(other), _sorted_frame(frame))


def test_a_row_without_features_after_the_first_with_them_means_no_lag(tmp_path: Path) -> None:
    rows = features_frame(symbols=2, days=40)
    gap = rows.index[(rows["symbol"] == "S001")][35]  # S001's 36th row loses its features
    rows.loc[gap, ["vol_moving_avg", "adj_close_rolling_med"]] = np.nan
    loaded = _load(write_features_table(tmp_path / "gap.duckdb", rows))
    assert loaded.lag_source == LAG_FROM_WINDOW
    assert loaded.rows == 2 * (40 - 29) - 1
    after_gap = rows.loc[gap + 1]
    row = np.flatnonzero(loaded.volume == after_gap["volume"])
    assert len(row) == 1 and np.isnan(loaded.lagged[0][row[0]])
    # Without the gap, the same table takes the storage-order path.
    assert _load(
        write_features_table(tmp_path / "nogap.duckdb", features_frame(2, 40))
    ).lag_source == (LAG_FROM_STORAGE_ORDER)


# --- splits and metrics ------------------------------------------------------------------------


def test_time_cutoff_holds_out_the_most_recent_fifth_of_rows() -> None:
    days = np.repeat(np.arange(100, 110, dtype=np.int32), 10)  # 10 days x 10 rows
    assert evaluation.time_cutoff(days, 0.2) == 107  # days 108, 109: 20 rows
    uneven = np.concatenate([np.full(70, 5), np.full(25, 9), np.full(5, 12)]).astype(np.int32)
    assert evaluation.time_cutoff(uneven, 0.2) == 9  # day 12 (5%): day 9 would make 30%
    assert evaluation.time_cutoff(np.array([1, 2], dtype=np.int32), 0.0) == 1  # never empty
    with pytest.raises(ValueError, match="two different dates"):
        evaluation.time_cutoff(np.full(5, 3, dtype=np.int32), 0.2)


def _summed_metrics(actual: np.ndarray, predicted: np.ndarray, pieces: int) -> dict[str, float]:
    """The metrics as training gathers them: error sums and spread added chunk by chunk."""
    errors, spread = evaluation.ErrorSums(), evaluation.Spread(float(np.median(actual)))
    for a, p in zip(np.array_split(actual, pieces), np.array_split(predicted, pieces), strict=True):
        errors.add(a, p)
        spread.add(a)
    return errors.metrics(spread)


def test_metrics_summed_in_chunks_match_hand_formulas_and_sklearn() -> None:
    actual, predicted = np.array([3.0, -0.5, 2.0, 7.0]), np.array([2.5, 0.0, 2.0, 8.0])
    got = _summed_metrics(actual, predicted, pieces=2)
    # Residuals 0.5, -0.5, 0, -1; mean of actual 2.875; SST = 29.1875.
    assert got["mae"] == pytest.approx(2.0 / 4)
    assert got["mse"] == pytest.approx(1.5 / 4)
    assert got["rmse"] == pytest.approx(math.sqrt(1.5 / 4))
    assert got["r2"] == pytest.approx(1 - 1.5 / 29.1875)
    rng = np.random.default_rng(1)
    actual, predicted = rng.lognormal(12, 2, 1000), rng.lognormal(12, 2, 1000)
    want = _sklearn_metrics(actual, predicted)
    for name, value in _summed_metrics(actual, predicted, pieces=7).items():
        assert value == pytest.approx(want[name], rel=1e-12)
    with pytest.raises(ValueError, match="no rows"):
        evaluation.ErrorSums().metrics(evaluation.Spread())


# --- the fits, against scikit-learn -----------------------------------------------------------


def test_registered_pipeline_equals_sklearn_pipeline_fit_on_all_rows(
    result: evaluation.TrainingResult, table: pd.DataFrame
) -> None:
    ours = result.pipeline
    assert [name for name, _ in ours.steps] == ["scale", "poly", "linear"]
    assert isinstance(ours.named_steps["scale"], StandardScaler)
    poly = ours.named_steps["poly"]
    assert isinstance(poly, PolynomialFeatures)
    assert (poly.degree, poly.include_bias) == (2, False)
    assert isinstance(ours.named_steps["linear"], LinearRegression)
    check_is_fitted(ours)

    reference = make_pipeline().fit(table[FEATURES], table["volume"].astype(float))
    for attribute in ("mean_", "var_", "scale_", "n_samples_seen_", "feature_names_in_"):
        got, want = getattr(ours[0], attribute), getattr(reference[0], attribute)
        if attribute == "feature_names_in_":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(ours[1].powers_, reference[1].powers_)
    np.testing.assert_allclose(ours[-1].coef_, reference[-1].coef_, rtol=1e-8)
    assert ours[-1].intercept_ == pytest.approx(reference[-1].intercept_, rel=1e-8)
    assert ours[-1].rank_ == reference[-1].rank_
    np.testing.assert_allclose(ours[-1].singular_, reference[-1].singular_, rtol=1e-6)
    assert ours.get_params(deep=True).keys() == reference.get_params(deep=True).keys()
    sample = table[FEATURES].iloc[::7]
    np.testing.assert_allclose(ours.predict(sample), reference.predict(sample), rtol=1e-9)
    restored = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(restored.predict(sample), ours.predict(sample))


def test_time_split_metrics_equal_sklearn_fits_on_rows_up_to_the_cutoff(
    result: evaluation.TrainingResult, table: pd.DataFrame
) -> None:
    cutoff = dt.date.fromisoformat(result.params["time_cutoff_date"])
    train, test = table[table["date"] <= cutoff], table[table["date"] > cutoff]
    assert result.params["rows_time_holdout"] == len(test)
    assert 0.15 < len(test) / len(table) <= 0.2
    assert result.params["time_holdout_first_date"] == test["date"].min().isoformat()
    assert result.params["time_holdout_last_date"] == table["date"].max().isoformat()
    y_train, y_test = train["volume"].astype(float), test["volume"].astype(float)

    poly = make_pipeline().fit(train[FEATURES], y_train)
    _assert_metrics(result, "time_poly", _sklearn_metrics(y_test, poly.predict(test[FEATURES])))
    linear = LinearRegression().fit(train[FEATURES], y_train)
    _assert_metrics(result, "time_linear", _sklearn_metrics(y_test, linear.predict(test[FEATURES])))
    _assert_metrics(result, "time_moving_avg", _sklearn_metrics(y_test, test["vol_moving_avg"]))
    time_poly = result.evaluation(evaluation.FEATURES, evaluation.TIME_SPLIT, evaluation.POLY)
    assert (time_poly.train_rows, time_poly.test_rows) == (len(train), len(test))


def test_random_split_metrics_equal_sklearn_fits(
    result: evaluation.TrainingResult, table: pd.DataFrame
) -> None:
    train, test = table[~table["random_test"]], table[table["random_test"]]
    assert result.params["rows_random_test"] == len(test)
    y_train, y_test = train["volume"].astype(float), test["volume"].astype(float)
    poly = make_pipeline().fit(train[FEATURES], y_train)
    _assert_metrics(result, "random_poly", _sklearn_metrics(y_test, poly.predict(test[FEATURES])))
    linear = LinearRegression().fit(train[FEATURES], y_train)
    _assert_metrics(
        result, "random_linear", _sklearn_metrics(y_test, linear.predict(test[FEATURES]))
    )


def test_leakage_free_variant_equals_sklearn_fits_on_lagged_features(
    result: evaluation.TrainingResult, table: pd.DataFrame
) -> None:
    lagged = [f"lag_{c}" for c in FEATURES]
    usable = table.dropna(subset=lagged)
    assert result.params["rows_lagged"] == len(usable)
    cutoff = dt.date.fromisoformat(result.params["time_cutoff_date"])
    for split, is_test in (
        ("time", usable["date"] > cutoff),
        ("random", usable["random_test"]),
    ):
        train, test = usable[~is_test], usable[is_test]
        x_train = train[lagged].set_axis(FEATURES, axis=1)
        x_test = test[lagged].set_axis(FEATURES, axis=1)
        y_train, y_test = train["volume"].astype(float), test["volume"].astype(float)
        poly = make_pipeline().fit(x_train, y_train)
        _assert_metrics(
            result, f"lagged_{split}_poly", _sklearn_metrics(y_test, poly.predict(x_test))
        )
        linear = LinearRegression().fit(x_train, y_train)
        _assert_metrics(
            result, f"lagged_{split}_linear", _sklearn_metrics(y_test, linear.predict(x_test))
        )
        _assert_metrics(
            result,
            f"lagged_{split}_moving_avg",
            _sklearn_metrics(y_test, test["lag_vol_moving_avg"]),
        )


def test_fit_recovers_the_known_polynomial(tmp_path: Path) -> None:
    exact = _load(write_features_table(tmp_path / "exact.duckdb", features_frame(noise=0.0)))
    pipeline = fit.fit_and_evaluate(exact).pipeline
    vma, acrm = exact.features
    grid = pd.DataFrame(
        {
            FEATURES[0]: np.geomspace(vma.min(), vma.max(), 25).repeat(25),
            FEATURES[1]: np.tile(np.geomspace(acrm.min(), acrm.max(), 25), 25),
        }
    )
    truth = true_volume(grid[FEATURES[0]].to_numpy(), grid[FEATURES[1]].to_numpy())
    # Volumes are stored rounded to whole shares: that is the only noise here.
    np.testing.assert_allclose(pipeline.predict(grid), truth, rtol=1e-4, atol=5.0)


def test_result_has_every_metric_and_explains_the_leakage(
    result: evaluation.TrainingResult,
) -> None:
    assert set(result.metrics) == EXPECTED_METRIC_NAMES
    assert all(math.isfinite(v) for v in result.metrics.values())
    for prefix in {n.rsplit("_", 1)[0] for n in EXPECTED_METRIC_NAMES}:
        m = result.metrics
        assert m[f"{prefix}_rmse"] == pytest.approx(math.sqrt(m[f"{prefix}_mse"]))
    text = describe_run(result)
    assert "leak" in text and "including the same day" in text
    lagged_r2 = result.metrics["lagged_time_poly_r2"]
    assert f"{lagged_r2:.4f}" in text
    assert result.params["time_cutoff_date"] in text
    assert list(result.input_example.columns) == FEATURES
    assert len(result.input_example) == fit.INPUT_EXAMPLE_ROWS


def test_plots_render_from_a_bounded_sample(result: evaluation.TrainingResult) -> None:
    assert len(result.plot_actual) == len(result.plot_predicted)
    assert len(result.plot_actual) == min(fit.PLOT_SAMPLE_ROWS, result.params["rows_time_holdout"])
    for figure in (
        plots.plot_predicted_vs_actual(result.plot_actual, result.plot_predicted),
        plots.plot_residuals(result.plot_actual, result.plot_predicted - 1e6),
    ):
        png = io.BytesIO()
        figure.savefig(png, format="png")
        assert png.getvalue().startswith(b"\x89PNG")


def test_empty_table_is_an_error(tmp_path: Path) -> None:
    empty = features_frame(symbols=1, days=20)  # fewer rows than the 30-row window
    with pytest.raises(ValueError, match="no rows"):
        fit.fit_and_evaluate(_load(write_features_table(tmp_path / "empty.duckdb", empty)))
