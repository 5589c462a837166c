"""`make run`: the whole pipeline on the instance in $DAGSTER_HOME, in one process.

    python -m etf_assets.orchestration.run_pipeline

Runs `ingest_job`, then `features_job` over every registered symbol in one run, then
`train_job`, and prints where the results are. Each job runs through the same function as
`dagster job execute -m etf_assets -j <job>`, so its run, events and origin in the instance are
those of the CLI; the one process loads Dagster and the code location once instead of once per
job.
"""

from __future__ import annotations

import json
import sys

import dagster as dg
from dagster._cli.job import execute_execute_command
from dagster_shared.cli import PythonPointerOpts

from etf_assets.orchestration import summary
from etf_assets.orchestration.partition_range import range_tags

CODE_LOCATION = PythonPointerOpts(module_name="etf_assets")


def run_job(
    instance: dg.DagsterInstance, job_name: str, tags: dict[str, str] | None = None
) -> None:
    result = execute_execute_command(
        python_pointer_opts=CODE_LOCATION,
        instance=instance,
        job_name=job_name,
        tags=json.dumps(tags) if tags else None,
    )
    if not result.success:
        raise SystemExit(
            f"{job_name} failed (run {result.run_id}); its events are above and in the UI "
            "(make dev)."
        )


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        run_job(instance, "ingest_job")
        run_job(instance, "features_job", range_tags(instance))
        run_job(instance, "train_job")
    sys.stdout.flush()
    summary.main()


if __name__ == "__main__":
    main()
