"""Print where a `make run` left its results."""

import os

from etf_assets.constants import (
    FEATURES_TABLE,
    MODEL_ALIAS,
    MODEL_NAME,
    PRICE_VOLUME_TABLE,
    REJECTED_ROWS_TABLE,
    SYMBOL_TABLE,
)
from etf_assets.orchestration.resources import settings_from_env, warehouse_for


def main() -> None:
    settings = settings_from_env()
    warehouse = warehouse_for(settings)
    print(f"\nResults under {settings.data_path}:")
    print(f"  warehouse   {warehouse.database}")
    with warehouse.get_connection() as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        for table in (SYMBOL_TABLE, PRICE_VOLUME_TABLE, REJECTED_ROWS_TABLE, FEATURES_TABLE):
            if table in tables:
                rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                print(f"    {table:<20} {rows:>12,} rows")
    print(f"  parquet     {settings.prices_stage}  (stage 1)")
    print(f"              {settings.features_stage}  (stage 2)")
    print(f"  mlflow      {settings.tracking_uri}  (make mlflow-ui)")
    print(f"              models:/{MODEL_NAME}@{MODEL_ALIAS}  (make serve)")
    dagster_home = os.environ.get("DAGSTER_HOME", "DAGSTER_HOME")
    print(f"  dagster     runs in {dagster_home}  (make dev)")


if __name__ == "__main__":
    main()
