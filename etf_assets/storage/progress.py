"""Progress of long DuckDB statements, logged while they run (shown in the Dagster event log
through the managed `etf_assets` logger)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


@contextmanager
def logged_progress(
    con: duckdb.DuckDBPyConnection,
    log: logging.Logger,
    what: str,
    total: int,
    unit: str,
    every_seconds: float = 5.0,
) -> Iterator[None]:
    """Every `every_seconds`, log "<what>: ~N of <total> <unit>" from DuckDB's query progress."""
    done = threading.Event()
    start = time.monotonic()

    def poll() -> None:
        while not done.wait(every_seconds):
            percent = con.query_progress()
            if percent >= 0:
                log.info(
                    "%s: ~%s of %s %s (%.0f%%, %.0f s)",
                    what,
                    f"{round(percent / 100 * total):,}",
                    f"{total:,}",
                    unit,
                    percent,
                    time.monotonic() - start,
                )

    thread = threading.Thread(target=poll, name=f"progress: {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
