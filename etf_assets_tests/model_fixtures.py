"""Generated `features_table` data whose volume follows a known polynomial, and its DuckDB file.

Imported explicitly by the model tests (`from etf_assets_tests.model_fixtures import ...`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

# volume = sum(c * vma^i * acrm^j) for (i, j) -> c: the relation the fit must recover. The
# squared volume term matters: with vma up to ~1e8 it adds up to ~2e7.
TRUE_TERMS = {
    (0, 0): 2_000.0,
    (1, 0): 0.9,
    (0, 1): 150.0,
    (2, 0): 2e-9,
    (1, 1): 4e-3,
    (0, 2): 2.5,
}
WINDOW_NULL_ROWS = 29  # features are NULL for each symbol's first 29 rows
# Every metric a training run must report: same-day and lagged, both splits, model and baselines.
EXPECTED_METRIC_NAMES = {
    f"{lag}{split}_{model}_{metric}"
    for lag in ("", "lagged_")
    for split in ("time", "random")
    for model in ("poly", "linear", "moving_avg")
    for metric in ("mae", "mse", "rmse", "r2")
}


def true_volume(vol_moving_avg: np.ndarray, adj_close_rolling_med: np.ndarray) -> np.ndarray:
    return sum(c * vol_moving_avg**i * adj_close_rolling_med**j for (i, j), c in TRUE_TERMS.items())


def features_frame(
    symbols: int = 12, days: int = 300, noise: float = 0.0, seed: int = 7
) -> pd.DataFrame:
    """Rows in the `features_table` schema: per symbol a log random walk of both features over
    business days from 2015-01-01, volume = true_volume (times 1 + noise * N(0, 1)), rounded."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=days).date
    frames = []
    for k in range(symbols):
        vma = np.exp(rng.uniform(8, 16) + np.cumsum(rng.normal(0, 0.05, days)))
        acrm = np.exp(rng.uniform(0, 6) + np.cumsum(rng.normal(0, 0.02, days)))
        volume = true_volume(vma, acrm) * (1 + noise * rng.standard_normal(days))
        price = acrm.copy()
        vma[:WINDOW_NULL_ROWS] = np.nan
        acrm[:WINDOW_NULL_ROWS] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "symbol": "NA" if k == 0 else f"S{k:03d}",
                    "security_name": f"Security {k}",
                    "date": dates,
                    "open": price,
                    "high": price,
                    "low": price,
                    "close": price,
                    "adj_close": price,
                    "volume": np.round(np.clip(volume, 0, None)).astype(np.int64),
                    "vol_moving_avg": vma,
                    "adj_close_rolling_med": acrm,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_features_table(database: Path, frame: pd.DataFrame) -> Path:
    """(Re)create `features_table` in the DuckDB file `database` from `frame` (NaN -> NULL)."""
    with duckdb.connect(str(database)) as con:
        con.register("generated", frame)
        con.execute(
            """
            CREATE OR REPLACE TABLE features_table AS
            SELECT symbol::VARCHAR AS symbol, security_name::VARCHAR AS security_name,
                   date::DATE AS date, open, high, low, close, adj_close,
                   volume::BIGINT AS volume,
                   CASE WHEN isnan(vol_moving_avg) THEN NULL ELSE vol_moving_avg END
                       AS vol_moving_avg,
                   CASE WHEN isnan(adj_close_rolling_med) THEN NULL ELSE adj_close_rolling_med END
                       AS adj_close_rolling_med
            FROM generated
            """
        )
    return database


@pytest.fixture(scope="module")
def features_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse file holding a generated `features_table` (1% noise on the volume)."""
    folder = tmp_path_factory.mktemp("model_warehouse")
    return write_features_table(folder / "warehouse.duckdb", features_frame(noise=0.01))
