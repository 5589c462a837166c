"""etf-pipeline: NASDAQ stock and ETF prices -> DuckDB warehouse, features, model, predictions."""

from etf_assets.definitions import defs

__all__ = ["defs"]
