"""etf-pipeline: NASDAQ stock and ETF prices -> DuckDB warehouse, features, model, predictions.

`etf_assets.defs` is the code location's `Definitions` (built in `etf_assets.definitions`). It is
imported on first use, so that `dagster ... -m etf_assets` finds it while the stage packages
(`etf_assets.ingest`, `.features`, `.model`) stay importable without loading Dagster, for the
serving app and the benchmarks.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from etf_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Dagster discovers the Definitions by listing the module's members.
    return sorted({*globals(), "defs"})
