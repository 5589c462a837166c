"""Behaviour under failure, with the real CLI in separate processes: a run killed with SIGKILL
in the middle of price_volume_table, a run whose raw/ another process is writing, and two runs
writing the warehouse at once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.storage.atomic_dir import exclusive
from etf_assets_tests.conftest import REPO, write_instance_config
from etf_assets_tests.oracle import read_expected

DAGSTER = str(Path(sys.executable).with_name("dagster"))
SELECT = "raw_zip,price_volume_table"


def cli_env(data_dir: Path, source: Path, pg_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ETF_DATA_DIR": str(data_dir),
        "ETF_SOURCE": str(source),
        "DAGSTER_HOME": str(write_instance_config(data_dir / "dagster_home")),
        "DAGSTER_PG_URL": pg_url,
    }


def start_materialize(env: dict[str, str], log: Path, select: str = SELECT) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "etf_assets", "--select", select],
        cwd=REPO,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def table_rows(data_dir: Path) -> list[tuple]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT * FROM price_volume_table ORDER BY symbol, date").fetchall()


def stage_bytes(data_dir: Path) -> dict[str, bytes]:
    stage = data_dir / "parquet" / "prices"
    return {str(p.relative_to(stage)): p.read_bytes() for p in stage.rglob("*.parquet")}


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("archives")
    small, big = root / "small", root / "big"
    generate_folder(SampleSpec(stocks=12, etfs=3, rows=200, seed=1), small)
    generate_folder(SampleSpec(stocks=1500, etfs=500, rows=1500, seed=2), big)
    return small, big


def wait_for(log: Path, pattern: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the run's log has a line matching `pattern`; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text(errors="replace")):
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"{pattern!r} not seen in {log}"
        time.sleep(0.02)


def test_sigkill_mid_load_keeps_previous_tables_and_stage(
    archives, tmp_path: Path, instance_pg_url: str
) -> None:
    small, big = archives
    data_dir = tmp_path / "data"
    first = start_materialize(cli_env(data_dir, small, instance_pg_url), tmp_path / "first.log")
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    before_rows, before_stage = table_rows(data_dir), stage_bytes(data_dir)
    assert len(before_rows) > 0

    log = tmp_path / "killed.log"
    killed = start_materialize(cli_env(data_dir, big, instance_pg_url), log)
    # Killed once the typed scan has committed the new rows to the load table in the warehouse,
    # while the stage is written and the table swapped in (millions of rows: far from instant).
    wait_for(log, r"read [\d,]+ rows of [\d,]+ files", killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert "loaded " not in log.read_text(errors="replace"), "the load finished before the kill"

    assert table_rows(data_dir) == before_rows
    assert stage_bytes(data_dir) == before_stage

    again = start_materialize(cli_env(data_dir, big, instance_pg_url), tmp_path / "again.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()[-3000:]
    assert len(table_rows(data_dir)) == len(read_expected(big).rows)


def test_raw_zip_waits_while_another_process_writes_raw(
    archives, tmp_path: Path, instance_pg_url: str
) -> None:
    small, _ = archives
    data_dir = tmp_path / "data"
    log = tmp_path / "run.log"
    # As another run's raw_zip does: it holds raw/ while it fetches and writes the manifest.
    with exclusive(data_dir / "raw"):
        run = start_materialize(cli_env(data_dir, small, instance_pg_url), log, "raw_zip")
        wait_for(log, "is writing .*raw: waiting for it to finish", run)
        time.sleep(1)
        assert run.poll() is None
        assert not (data_dir / "raw" / "manifest.json").exists()
    assert run.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert json.loads((data_dir / "raw" / "manifest.json").read_text())["root"] == str(small)


def test_two_runs_writing_at_once_do_not_corrupt_the_warehouse(
    archives, tmp_path: Path, instance_pg_url: str
) -> None:
    small, big = archives
    data_dir = tmp_path / "data"
    # A first run creates the Dagster instance's databases, which two processes must not race on.
    warm_up = start_materialize(cli_env(data_dir, small, instance_pg_url), tmp_path / "warm-up.log")
    assert warm_up.wait(timeout=300) == 0, (tmp_path / "warm-up.log").read_text()[-3000:]
    env = cli_env(data_dir, big, instance_pg_url)
    runs = [start_materialize(env, tmp_path / f"run{i}.log") for i in range(2)]
    codes = [run.wait(timeout=600) for run in runs]
    logs = [(tmp_path / f"run{i}.log").read_text(errors="replace") for i in range(2)]
    for code, log in zip(codes, logs, strict=True):
        # Each run either waited for the other and succeeded, or failed saying why.
        assert code == 0 or "held by another process" in log, log[-3000:]
    assert 0 in codes
    expected = read_expected(big)
    rows = table_rows(data_dir)
    assert {(r[0], r[2]) for r in rows} == set(expected.rows)
    assert len(rows) == len(expected.rows)
