"""The one `Definitions` object of the `etf_assets` code location."""

import dagster as dg

from etf_assets.orchestration.assets.features import features_table
from etf_assets.orchestration.assets.ingest import price_volume_table, symbol_table
from etf_assets.orchestration.assets.model import poly_model
from etf_assets.orchestration.assets.raw import raw_zip
from etf_assets.orchestration.automation import SCHEDULES, SENSORS
from etf_assets.orchestration.checks import ALL_CHECKS
from etf_assets.orchestration.jobs import features_job, ingest_job, train_job
from etf_assets.orchestration.resources import settings_from_env, warehouse_for

settings = settings_from_env()

defs = dg.Definitions(
    assets=[raw_zip, price_volume_table, symbol_table, features_table, poly_model],
    asset_checks=ALL_CHECKS,
    jobs=[ingest_job, features_job, train_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={"settings": settings, "warehouse": warehouse_for(settings)},
    # One process per run: its steps take the warehouse's write lock one after another.
    executor=dg.in_process_executor,
)
