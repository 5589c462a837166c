"""The MLflow run description: what was trained, how it was evaluated, what the table of metrics
says in words (which model wins on the time holdout, and by how much), and what the leakage-free
variant shows, in prose for the person who opens the run."""

from __future__ import annotations

from etf_assets.model.evaluation import (
    FEATURES,
    LAGGED,
    LINEAR,
    MODELS,
    MOVING_AVG,
    POLY,
    TIME_SPLIT,
    TrainingResult,
)

NAMES = {
    POLY: "the polynomial",
    LINEAR: "the plain linear model",
    MOVING_AVG: "the moving-average baseline",
}
# R^2 values closer than this are reported as a tie: the table shows R^2 to four decimals, and
# a difference in the fourth decimal is no reason to prefer a model.
R2_TIE = 0.001
# Relative MAE or RMSE differences below this are "about the same".
ERROR_TIE = 0.005


def _percent(value: float, reference: float) -> float:
    return value / reference - 1.0 if reference else 0.0


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _r2_sentence(metrics: dict[str, dict[str, float]]) -> str:
    ranked = sorted(MODELS, key=lambda m: metrics[m]["r2"], reverse=True)
    values = [metrics[m]["r2"] for m in ranked]
    listed = _list([f"{NAMES[m]} {metrics[m]['r2']:.4f}" for m in ranked])
    if values[0] - values[-1] < R2_TIE:
        return (
            f"All three score nearly the same R^2 ({listed}): the regressions explain no more "
            "of the variance than predicting `vol_moving_avg` itself."
        )
    lead = values[0] - values[1]
    if lead < R2_TIE:
        tied = [m for m in ranked if values[0] - metrics[m]["r2"] < R2_TIE]
        return f"{_cap(_list([NAMES[m] for m in tied]))} share the best R^2 ({listed})."
    return f"{_cap(NAMES[ranked[0]])} has the best R^2, {lead:.4f} ahead of the next ({listed})."


def _error_sentence(metrics: dict[str, dict[str, float]], key: str, label: str) -> str:
    best = min(MODELS, key=lambda m: metrics[m][key])
    others = [m for m in MODELS if m != best]
    runner_up = min(others, key=lambda m: metrics[m][key])
    margin = -_percent(metrics[best][key], metrics[runner_up][key])
    values = _list([f"{NAMES[m]} {metrics[m][key]:,.0f}" for m in MODELS])
    if margin < ERROR_TIE:
        return f"By {label} they are about level ({values})."
    return (
        f"{_cap(NAMES[best])} has the lowest {label}, {margin:.1%} below "
        f"{NAMES[runner_up]} ({values})."
    )


def _verdict(metrics: dict[str, dict[str, float]]) -> str:
    """Whether the polynomial beats the moving-average baseline, measure by measure."""
    poly, baseline = metrics[POLY], metrics[MOVING_AVG]
    r2_gain = poly["r2"] - baseline["r2"]
    mae_change = _percent(poly["mae"], baseline["mae"])
    rmse_change = _percent(poly["rmse"], baseline["rmse"])
    # +1: the polynomial is better on that measure, -1 worse, 0 about level.
    outcome = {
        "R^2": 0 if abs(r2_gain) < R2_TIE else (1 if r2_gain > 0 else -1),
        "MAE": 0 if abs(mae_change) < ERROR_TIE else (1 if mae_change < 0 else -1),
        "RMSE": 0 if abs(rmse_change) < ERROR_TIE else (1 if rmse_change < 0 else -1),
    }
    better = [k for k, v in outcome.items() if v > 0]
    worse = [k for k, v in outcome.items() if v < 0]
    level = [k for k, v in outcome.items() if v == 0]
    changes = (
        f"R^2 {r2_gain:+.4f}, MAE {mae_change:+.1%}, RMSE {rmse_change:+.1%} against the "
        "moving-average baseline"
    )
    if len(better) == 3:
        return f"The polynomial beats the baseline on every measure ({changes})."
    if len(worse) == 3:
        return f"The polynomial is worse than the baseline on every measure ({changes})."
    if len(level) == 3:
        return f"The polynomial does no better than the baseline ({changes})."
    if not better:
        return (
            f"The polynomial does not beat the baseline: level on {_list(level)}, worse on "
            f"{_list(worse)} ({changes})."
        )
    if not worse:
        return (
            f"The polynomial beats the baseline on {_list(better)} and is level on "
            f"{_list(level)} ({changes})."
        )
    return (
        f"The measures disagree: the polynomial is better on {_list(better)}, worse on "
        f"{_list(worse)} ({changes}; R^2 and RMSE weigh the large errors of heavy-volume days, "
        "MAE the typical day)."
    )


def holdout_findings(result: TrainingResult, features: str = FEATURES) -> list[str]:
    """The time-holdout rows of the metrics table in words, one sentence each: the models ranked
    by R^2, by MAE and by RMSE, and whether the polynomial beats the moving-average baseline."""
    metrics = {m: result.evaluation(features, TIME_SPLIT, m).metrics for m in MODELS}
    return [
        _r2_sentence(metrics),
        _error_sentence(metrics, "mae", "MAE"),
        _error_sentence(metrics, "rmse", "RMSE"),
        _verdict(metrics),
    ]


def summarize_holdout(result: TrainingResult, features: str = FEATURES) -> str:
    """`holdout_findings` as one paragraph."""
    return " ".join(holdout_findings(result, features))


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
            "**What the numbers say** (time holdout; the table below has them all):",
            "",
            "- Same-day features, as the registered model takes them:",
            *[f"    - {finding}" for finding in holdout_findings(result)],
            "- Leakage-free (lagged) features:",
            *[f"    - {finding}" for finding in holdout_findings(result, LAGGED)],
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
