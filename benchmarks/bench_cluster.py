"""Scale-out at full scale: `make run` with `ETF_DASK_SCHEDULER` naming a local two-worker Dask
cluster, against `make run` in-process, in the same run: wall time, each step's time from the
runs' event logs, the tasks per kind and per worker, and the workers' peak memory.

The cluster is `etf_assets.cluster.local` (what `make cluster` starts): a scheduler and two
one-thread workers on 127.0.0.1, beside the run's process on the same cores. The figures say
what moving the work into tasks costs and which steps it moves, not what more machines gain.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.bench_end_to_end import (
    DATA_DIR,
    WORK,
    Timed,
    ensure_installed,
    make_run_instance,
    run_times,
    time_make_run,
)
from benchmarks.common import await_full_scale_archive
from etf_assets.cluster import local as local_cluster

CLUSTER_DATA_DIR = WORK / "make_run_cluster_data"
WORKERS = 2
TASK_ASSETS = ("price_volume_table", "features_table", "poly_model")


def _step_seconds(data_dir: Path) -> tuple[dict[str, float], dict[str, dict]]:
    """Each step's seconds, and the Dask metadata each asset recorded (the latest
    materialization, or for the partitioned features_table the latest observation)."""
    import dagster as dg

    with make_run_instance(data_dir / "dagster_home") as instance:
        steps = {
            step.key: step.end - step.start for run in run_times(instance) for step in run.steps
        }
        work = {}
        for asset in TASK_ASSETS:
            fetch = (
                instance.fetch_observations
                if asset == "features_table"
                else instance.fetch_materializations
            )
            records = fetch(dg.AssetKey(asset), limit=1).records
            data = records[0].asset_event.metadata if records else {}
            work[asset] = {k: v.value for k, v in data.items() if k.startswith("dask_")}
    return steps, work


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def main(archive: Path | None = None) -> None:
    if archive is None:
        _, archive = await_full_scale_archive()
    ensure_installed()
    WORK.mkdir(parents=True, exist_ok=True)
    local = time_make_run(archive)
    cluster = local_cluster.start(WORK / "dask", workers=WORKERS)
    try:
        clustered = time_make_run(
            archive,
            CLUSTER_DATA_DIR,
            f"make run, {WORKERS} Dask workers",
            ETF_DASK_SCHEDULER=cluster.address,
        )
        worker_peaks = [_peak_rss_mb(worker.pid) for worker in cluster.workers]
    finally:
        cluster.stop()
    local_steps, _ = _step_seconds(DATA_DIR)
    cluster_steps, work = _step_seconds(CLUSTER_DATA_DIR)
    _print(archive, local, clustered, local_steps, cluster_steps, work, worker_peaks)


def _print(
    archive: Path,
    local: Timed,
    clustered: Timed,
    local_steps: dict[str, float],
    cluster_steps: dict[str, float],
    work: dict[str, dict],
    worker_peaks: list[float],
) -> None:
    print(f"\nScale-out, {archive.name}: `make run` in-process against {WORKERS} local workers")
    print(f"  {'':44} {'in-process':>11} {'on Dask':>10}")
    for timed_local, timed_cluster, label in (
        (local.measurement.seconds, clustered.measurement.seconds, "wall seconds"),
        (local.cpu_seconds, clustered.cpu_seconds, "CPU seconds of make run's processes"),
        (local.measurement.peak_mb / 1024, clustered.measurement.peak_mb / 1024, "peak GB, run"),
    ):
        print(f"  {label:44} {timed_local:11.1f} {timed_cluster:10.1f}")
    peaks = ", ".join(f"{peak / 1024:.1f}" for peak in worker_peaks)
    print(f"  {'peak GB of each worker':44} {'-':>11} {peaks:>10}")
    print(f"  1-min load at start, end: {local.load[0]:.1f}, {local.load[1]:.1f} | "
          f"{clustered.load[0]:.1f}, {clustered.load[1]:.1f}")  # fmt: skip
    print("\n  steps (seconds, from the event logs)")
    for key in sorted(local_steps.keys() | cluster_steps.keys(), key=_step_order(local_steps)):
        print(
            f"  {key:44} {local_steps.get(key, math.nan):11.1f} "
            f"{cluster_steps.get(key, math.nan):10.1f}"
        )
    print("\n  tasks on the cluster")
    for asset, metadata in work.items():
        by_kind = metadata.get("dask_tasks_by_kind", {})
        by_worker = metadata.get("dask_tasks_by_worker", {})
        kinds = ", ".join(f"{kind} {count}" for kind, count in by_kind.items())
        workers = ", ".join(str(count) for count in by_worker.values())
        print(f"  {asset:22} {kinds}; per worker: {workers}")


def _step_order(steps: dict[str, float]):  # noqa: ANN202
    order = {key: number for number, key in enumerate(steps)}
    return lambda key: order.get(key, len(order))


if __name__ == "__main__":
    main()
