"""The run's plots of the time holdout: predicted against actual volume, and the residuals."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray) -> Figure:
    """Log-log scatter of predicted against actual volume (a sample of the time holdout)."""
    figure = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = figure.subplots()
    floor = 1.0
    shown_actual, shown_predicted = np.clip(actual, floor, None), np.clip(predicted, floor, None)
    ax.scatter(shown_actual, shown_predicted, s=2, alpha=0.25, linewidths=0, rasterized=True)
    low = min(
        float(np.min(shown_actual, initial=1e18)), float(np.min(shown_predicted, initial=1e18))
    )
    high = max(
        float(np.max(shown_actual, initial=floor)), float(np.max(shown_predicted, initial=floor))
    )
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = actual")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="actual volume",
        ylabel="predicted volume",
        title=f"Time holdout: predicted vs actual ({len(actual):,} rows shown)",
    )
    below = int((predicted < floor).sum())
    ax.legend(loc="upper left", title=f"{below:,} predictions < 1 drawn at 1" if below else None)
    return figure


def plot_residuals(actual: np.ndarray, predicted: np.ndarray) -> Figure:
    """Residual (actual - predicted) against predicted volume: log x axis, symmetric-log y axis
    (linear only within +-1,000 shares), a sample of the time holdout."""
    figure = Figure(figsize=(7.0, 4.8), layout="constrained")
    ax = figure.subplots()
    floor = 1.0
    residual = actual - predicted
    ax.scatter(
        np.clip(predicted, floor, None), residual, s=2, alpha=0.25, linewidths=0, rasterized=True
    )
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xscale("log")
    linthresh = 1_000.0
    ax.set_yscale("symlog", linthresh=linthresh)
    top = max(float(np.max(np.abs(residual), initial=linthresh)), linthresh)
    exponents = range(3, math.ceil(math.log10(top)) + 1)
    ticks = [0.0] + [sign * 10.0**k for k in exponents for sign in (-1, 1)]
    ax.set_yticks(sorted(ticks))
    ax.set(
        xlabel="predicted volume" + (" (< 1 drawn at 1)" if (predicted < floor).any() else ""),
        ylabel="residual (actual - predicted)",
        title=f"Time holdout: residuals ({len(actual):,} rows shown)",
    )
    return figure
