"""The MLflow run description: what was trained, how it was evaluated, and what the leakage-free
variant shows, in prose for the person who opens the run."""

from __future__ import annotations

from etf_assets.model.evaluation import FEATURES, LAGGED, POLY, TIME_SPLIT, TrainingResult


def describe_run(result: TrainingResult) -> str:
    """The run description, in markdown, ending with the table of every evaluation."""
    p = result.params
    same = result.evaluation(FEATURES, TIME_SPLIT, POLY).metrics
    lagged = result.evaluation(LAGGED, TIME_SPLIT, POLY).metrics
    rmse_change = lagged["rmse"] / same["rmse"] - 1.0
    return "\n".join(
        [
            f"Degree-{p['degree']} polynomial regression of `{p['target']}` on "
            f"`vol_moving_avg` and `adj_close_rolling_med` (StandardScaler -> "
            f"PolynomialFeatures -> LinearRegression), over the {p['rows_model']:,} rows where "
            "both features exist. The registered model is fitted on all of them.",
            "",
            f"**Primary evaluation: time holdout.** Trained on rows dated "
            f"{p['time_train_first_date']} to {p['time_cutoff_date']} "
            f"({p['rows_time_train']:,} rows), tested on the {p['rows_time_holdout']:,} rows dated "
            f"{p['time_holdout_first_date']} to {p['time_holdout_last_date']}: the most recent "
            f"{p['rows_time_holdout'] / p['rows_model']:.1%} of the rows (the split is on the "
            "share of rows, not of calendar dates). Also the problem statement's random 80/20 "
            f"split, seed {p['random_split_seed']}: a row is a test row when a seeded hash of "
            "its symbol and date says so, which does not depend on row order.",
            "",
            "Baselines: `moving_avg` predicts `vol_moving_avg` itself; `linear` is a plain "
            "linear regression on the two features.",
            "",
            "**Target leakage.** `vol_moving_avg` is the mean of the 30 most recent volumes "
            "*including the same day's*, which is the target: with same-day features the model "
            "partly reads the answer. The `lagged` rows use both features of the previous "
            "trading day, which are known before the day starts. On the time holdout: "
            f"R^2 {same['r2']:.4f} with same-day features, {lagged['r2']:.4f} leakage-free; "
            f"RMSE {same['rmse']:,.0f} vs {lagged['rmse']:,.0f} ({rmse_change:+.1%}). "
            "That difference is skill that comes from the leak, not from forecasting: judge "
            "the model as a forecast by the lagged numbers. The same-day numbers describe it "
            "only where the day's volume is already part of its inputs. The registered model "
            "takes same-day features, as the serving API does; given features computed up to "
            "the previous day it is a forecast, and does at best as well as the lagged model.",
            "",
            result.metrics_markdown(),
        ]
    )
