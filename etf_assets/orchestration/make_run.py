"""What `make run` runs: the bundled Postgres server of the Dagster instance starts while the
pipeline's modules import, then `run_pipeline` runs.

    python -m etf_assets.orchestration.make_run --holder PID

Starting the server takes a second or more on a fresh folder, and so does importing Dagster;
one after the other, they were the first seconds of every `make run`. `PID` (the Makefile's
shell) holds the server and stops it when it exits, as for `make dev`. With `DAGSTER_PG_URL`
set, nothing is started: `run_pipeline` checks that database before its first run.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor

from etf_assets.orchestration import instance_db


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--holder", type=int, required=True, help="pid of the process that stops the server"
    )
    args = parser.parse_args(argv)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="instance-db") as pool:
        starting = None
        if not os.environ.get(instance_db.PG_URL_ENV):
            starting = pool.submit(instance_db.start, args.holder)
        from etf_assets.orchestration import run_pipeline

        if starting is not None:
            try:
                os.environ[instance_db.PG_URL_ENV] = starting.result()
            except instance_db.InstanceDatabaseError as exc:
                raise SystemExit(f"error: {exc}") from exc
    run_pipeline.main()
    run_pipeline.exit_without_teardown()


if __name__ == "__main__":
    main()
