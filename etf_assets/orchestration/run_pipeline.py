"""`make run`: the whole pipeline on the instance in $DAGSTER_HOME, in one process.

    python -m etf_assets.orchestration.run_pipeline

Runs `ingest_job`, then `features_job` over every registered symbol in one run, then
`train_job`, and prints where the results are. Each job runs through the same function as
`dagster job execute -m etf_assets -j <job>`, so its run, events and origin in the instance are
those of the CLI; the one process loads Dagster and the code location once instead of once per
job.

When something fails, the last lines say what in a sentence: the failed step's own message (a
full disk, for instance), that the instance's database cannot be reached or stopped answering,
or that the Dask scheduler `ETF_DASK_SCHEDULER` names does not answer (checked before any
run). Runs of an earlier `make run` that ended without being recorded (its process, or the
instance's database, was killed) are marked failed first.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import socket
import sys
import threading
import time

# Before Dagster and MLflow: importing skops.io (the model's format, in poly_model) looks up each
# numpy and scipy ufunc in every loaded module, in import order, until it finds it. With numpy
# and scipy.special first in sys.modules, that takes a fraction of a second instead of seconds.
import numpy  # noqa: F401
import scipy.special  # noqa: F401

# isort: split
import click
import dagster as dg
from dagster._cli.job import execute_execute_command
from dagster_shared.cli import PythonPointerOpts

from etf_assets.cluster.tasks import ClusterUnavailableError, connected, scheduler_from_env
from etf_assets.orchestration import instance_db, summary
from etf_assets.orchestration.partition_range import range_tags
from etf_assets.storage.disk_space import disk_full_error

CODE_LOCATION = PythonPointerOpts(module_name="etf_assets")
# Which process ran a run: "<host> <pid> <process start time>". A later `make run` on the same
# host marks the run failed when that process is gone and the run never ended.
RUNNER_TAG = "etf/runner"
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# How long to wait for the instance's database before saying it is not there.
REACH_TIMEOUT_SECONDS = 5.0
RESTART_HINT = (
    "`make run` and `make dev` start the bundled Postgres server (a killed one too); by hand: "
    "`python -m etf_assets.orchestration.instance_db start`."
)


class InstanceDatabaseLost(RuntimeError):
    """The Dagster instance's database cannot be reached, or stopped answering during a run."""


def _process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def runner_tag() -> str:
    return f"{socket.gethostname()} {os.getpid()} {_process_start_time(os.getpid())}"


def _runner_alive(tag: str) -> bool:
    host, _, rest = tag.partition(" ")
    pid, _, started = rest.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's process: not ours to judge
    return str(_process_start_time(int(pid))) == started


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs of `make run` processes that ended without recording the end of
    their run (killed, or the instance's database went away); return their ids."""
    abandoned = [
        run
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED))
        if RUNNER_TAG in run.tags and not _runner_alive(run.tags[RUNNER_TAG])
    ]
    for run in abandoned:
        instance.report_run_failed(
            run,
            "The process running this run ended before the run's end was recorded (it was "
            "killed, or the instance's database was unreachable); marked failed by the next "
            "`make run`.",
        )
    return [run.run_id for run in abandoned]


def _database_error(exc: BaseException) -> BaseException | None:
    """The error in `exc`'s chain that comes from the instance's database connection."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        module = type(exc).__module__
        if module.startswith(("sqlalchemy", "psycopg2", "dagster_postgres")):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def _failure_summary(instance: dg.DagsterInstance, run_id: str) -> str:
    """Each failed step of a run with the first line of its message (a `dg.Failure`'s
    description, else the error's own)."""
    lines = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        data = event.step_failure_data if event else None
        if data is None:
            continue
        if data.user_failure_data is not None and data.user_failure_data.description:
            message = data.user_failure_data.description
        else:
            error = data.error
            while error is not None and error.cause is not None and not error.message.strip():
                error = error.cause
            message = error.message if error is not None else ""
        first = message.strip().splitlines()[0] if message.strip() else "(no message)"
        lines.append(f"  {event.step_key}: {first}")
    return "\n".join(lines)


def _lost_message(job_name: str, error: BaseException) -> str:
    consequences = (
        "The run's end could not be recorded; the next `make run` marks it failed. Every table "
        "and Parquet stage holds its last committed state: each load replaces them in one "
        "transaction."
    )
    if disk_full_error(error) is not None:
        pgdata = instance_db.pgdata_dir()
        where = f" in {pgdata}" if pgdata.is_dir() else ""
        return (
            f"{job_name} stopped: the disk is full: the Dagster instance's database{where} "
            f"could not write ({_one_line(error)}). {consequences} Free space on that disk and "
            "run again: nothing needs cleaning by hand."
        )
    return (
        f"{job_name} stopped: the Dagster instance's database stopped answering "
        f"({_one_line(error)}). {consequences} {RESTART_HINT}"
    )


# Allocations between young-generation collections (CPython's default is 700): the 8,046
# partition events of features_job allocate millions of short-lived objects.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Move the objects alive now (modules, definitions, the instance) out of the collector's
    view: every full collection after this no longer walks them (benchmarks/README.md has the
    collector's time in a full-scale `make run` with and without).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def run_job(
    instance: dg.DagsterInstance, job_name: str, tags: dict[str, str] | None = None
) -> None:
    settle_heap()
    runner = runner_tag()
    try:
        execute_execute_command(
            python_pointer_opts=CODE_LOCATION,
            instance=instance,
            job_name=job_name,
            tags=json.dumps({**(tags or {}), RUNNER_TAG: runner}),
        )
    except click.ClickException as exc:  # what `dagster job execute` raises for a failed run
        [run] = instance.get_runs(
            filters=dg.RunsFilter(job_name=job_name, tags={RUNNER_TAG: runner}), limit=1
        ) or [None]
        if run is None:
            raise SystemExit(f"{job_name} failed: {exc.message}") from None
        raise SystemExit(
            f"{job_name} failed (run {run.run_id}); its events are above and in the UI "
            f"(make dev).\n{_failure_summary(instance, run.run_id)}".rstrip()
        ) from None
    except Exception as exc:
        if (error := _database_error(exc)) is None:
            raise
        raise InstanceDatabaseLost(_lost_message(job_name, error)) from exc


class _RetriesOnce(logging.Filter):
    """dagster-postgres logs every retry of a lost connection with SQLAlchemy's whole message;
    one short line says it."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Retrying failed database connection"):
            return True
        now = time.monotonic()
        shown, self._last = now - self._last > 60, now
        if shown:
            record.msg = "The Dagster instance's database does not answer; retrying"
            record.args = ()
        return shown


def _check_instance_database() -> None:
    if url := os.environ.get(instance_db.PG_URL_ENV):
        try:
            instance_db.check_reachable(url, timeout=REACH_TIMEOUT_SECONDS)
        except instance_db.InstanceDatabaseError as exc:
            text = str(exc).rstrip()
            stop = "" if text.endswith((".", "?", "!")) else "."
            raise InstanceDatabaseLost(
                f"{text}{stop} Nothing was run; the warehouse is unchanged. {RESTART_HINT}"
            ) from exc


def _check_cluster() -> None:
    """With `ETF_DASK_SCHEDULER` set, a scheduler that does not answer (or has no workers) stops
    `make run` before its first job, where each step would otherwise find out on its own."""
    if scheduler := scheduler_from_env():
        try:
            with connected(scheduler):
                pass
        except ClusterUnavailableError as exc:
            raise SystemExit(f"error: {exc} Nothing was run; the warehouse is unchanged.") from None


def main() -> None:
    logging.getLogger().addFilter(_RetriesOnce())
    # A log call whose event cannot be stored (the instance's database is gone or its disk is
    # full) would print the storage's whole traceback each time; the last lines say it once.
    logging.raiseExceptions = False
    try:
        _check_instance_database()
        _check_cluster()
        with dg.DagsterInstance.get() as instance:
            if abandoned := fail_abandoned_runs(instance):
                print(f"marked {len(abandoned)} abandoned run(s) failed: {', '.join(abandoned)}")
            run_job(instance, "ingest_job")
            run_job(instance, "features_job", range_tags(instance))
            run_job(instance, "train_job")
    except InstanceDatabaseLost as exc:
        raise SystemExit(f"error: {exc}") from None
    except Exception as exc:
        if (error := _database_error(exc)) is None:
            raise
        raise SystemExit(f"error: {_lost_message('make run', error)}") from None
    sys.stdout.flush()
    summary.main()


def exit_without_teardown() -> None:
    """End the process once everything is written and closed, without unloading its modules.

    Tearing down an interpreter that has loaded Dagster, MLflow and scikit-learn takes seconds
    and changes nothing on disk. The exit handlers still run; a thread still working (none
    should be) gets the ordinary exit, which waits for it.
    """
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # noqa: SLF001  (what an ordinary exit runs first)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    exit_without_teardown()
