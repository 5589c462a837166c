"""Jobs users run from the UI or with `dagster job execute -m etf_assets -j <job>`."""

import dagster as dg

from etf_assets.constants import (
    FEATURES_TABLE,
    POLY_MODEL,
    PRICE_VOLUME_TABLE,
    RAW_ZIP,
    SYMBOL_TABLE,
)

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.assets(RAW_ZIP, PRICE_VOLUME_TABLE, SYMBOL_TABLE),
    description="Get the archive and load it into DuckDB and Parquet stage 1; registers the "
    "symbols partitions.",
)

features_job = dg.define_asset_job(
    name="features_job",
    selection=dg.AssetSelection.assets(FEATURES_TABLE),
    description="Compute the features of a range of symbols in one run. From the CLI pass the "
    "range as tags; `python -m etf_assets.orchestration.partition_range` prints them for every "
    "symbol.",
)

train_job = dg.define_asset_job(
    name="train_job",
    selection=dg.AssetSelection.assets(POLY_MODEL),
    description="Train, evaluate and register the volume model on all of features_table.",
)
