"""Jobs users run from the UI or with `dagster job execute -m etf_assets -j <job>`."""

import dagster as dg

from etf_assets.constants import PRICE_VOLUME_TABLE, RAW_ZIP, SYMBOL_TABLE

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.assets(RAW_ZIP, PRICE_VOLUME_TABLE, SYMBOL_TABLE),
    description="Get the archive and load it into DuckDB and Parquet stage 1; registers the "
    "symbols partitions.",
)
