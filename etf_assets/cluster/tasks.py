"""Run a step's tasks on the Dask cluster that `ETF_DASK_SCHEDULER` names, and say who ran them.

A task is a module-level function of etf_assets (the workers import it from their own install)
whose arguments and result are small: it reads and writes files under paths it is given, and
writes each output under a name of its own, replacing what a previous attempt left. So when a
worker dies holding a task and the scheduler runs the task again elsewhere, the second attempt
overwrites the first's files instead of adding to them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SCHEDULER_ENV = "ETF_DASK_SCHEDULER"
# Work is split into at least this many tasks per worker, so that every worker gets some even on
# a small archive, and a worker that finishes early takes over the tail of another's.
TASKS_PER_WORKER = 4
CONNECT_SECONDS = 10.0
WORKERS_SECONDS = 60.0


class ClusterUnavailableError(RuntimeError):
    """The scheduler cannot be reached, or has no workers: nothing was started on it."""


def scheduler_from_env() -> str:
    """The scheduler address in `ETF_DASK_SCHEDULER`, or "" (run in-process)."""
    return os.environ.get(SCHEDULER_ENV, "").strip()


@dataclass
class ClusterWork:
    """What a step ran on the cluster: tasks per kind and the workers that ran them."""

    scheduler: str
    tasks: Counter[str] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)  # address -> tasks it finished

    def metadata(self) -> dict[str, Any]:
        return {
            "dask_scheduler": self.scheduler,
            "dask_workers": sorted(self.workers),
            "dask_tasks": sum(self.tasks.values()),
            "dask_tasks_by_kind": dict(sorted(self.tasks.items())),
            "dask_tasks_by_worker": dict(sorted(self.workers.items())),
        }


class Cluster:
    """A connected client and the work run through it; see `connected`."""

    def __init__(self, client: Any, scheduler: str) -> None:
        self._client = client
        self.work = ClusterWork(scheduler)

    @property
    def workers(self) -> int:
        """How many workers the scheduler has now."""
        return len(self._client.scheduler_info(n_workers=-1)["workers"])

    @property
    def min_tasks(self) -> int:
        """Split a step's work into at least this many tasks (TASKS_PER_WORKER per worker)."""
        return TASKS_PER_WORKER * self.workers

    def run(
        self, kind: str, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """`function(*args)` for each of `arguments` on the workers; the results in order.
        See `completed`."""
        results: list[Any] = [None] * len(arguments)
        for number, result in self.completed(kind, function, arguments):
            results[number] = result
        return results

    def completed(
        self, kind: str, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        """`function(*args)` for each of `arguments` on the workers: (position in `arguments`,
        result) as each task finishes, so that the caller can use one result while others run.

        The first task that raises cancels the others and its error is raised here, with the
        worker's traceback. Keys are unique to this call, so that two runs on one scheduler
        never share a result.
        """
        from distributed import as_completed

        token = uuid.uuid4().hex[:12]
        futures = [
            self._client.submit(
                _run_and_name_worker, function, *args, key=f"{kind}-{token}-{number}", pure=False
            )
            for number, args in enumerate(arguments)
        ]
        position = {future.key: number for number, future in enumerate(futures)}
        try:
            for done, (result, worker) in as_completed(
                futures, loop=self._client.loop, with_results=True
            ):
                self.work.tasks[kind] += 1
                self.work.workers[worker] += 1
                log.info(
                    "%s: %d of %d tasks done (last on %s)",
                    kind,
                    self.work.tasks[kind],
                    len(futures),
                    worker,
                )
                yield position[done.key], result
        finally:
            self._client.cancel(futures)  # any still running when the caller stops or fails


def _run_and_name_worker(function: Callable[..., Any], *args: Any) -> tuple[Any, str]:
    from distributed import get_worker

    return function(*args), get_worker().address


@contextmanager
def connected(scheduler: str) -> Iterator[Cluster]:
    """A client of the scheduler at `scheduler` with at least one worker.

    Raises ClusterUnavailableError naming the address when the scheduler does not answer within
    CONNECT_SECONDS or no worker joins within WORKERS_SECONDS; callers connect before they
    write anything, so that the error leaves nothing half-written.
    """
    from distributed import Client

    try:
        client = Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailableError(
            f"Cannot reach the Dask scheduler at {scheduler} ({SCHEDULER_ENV}): {exc}. "
            f"Start it (`make cluster` starts one here) or unset {SCHEDULER_ENV} to run in "
            "this process."
        ) from exc
    try:
        try:
            client.wait_for_workers(1, timeout=WORKERS_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailableError(
                f"The Dask scheduler at {scheduler} ({SCHEDULER_ENV}) has no workers after "
                f"{WORKERS_SECONDS:.0f} s: start `dask worker {scheduler}` on the machines "
                "that should do the work."
            ) from exc
        yield Cluster(client, scheduler)
    finally:
        client.close()
