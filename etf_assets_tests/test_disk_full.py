"""A full disk, for real: data folders on size-limited tmpfs mounts (tests run as root; they skip,
saying why, where mounting is refused).

Two ways to run out of space. A disk too small for what a step will write: the step refuses
before writing, naming the folder, the bytes it needs and the bytes free. A disk that something
else fills while the step writes (a thread allocates every free byte the moment the step starts
writing there): the step fails saying the disk is full and where, every table and stage stays as
it was, what the step wrote is removed, and once there is room the same run succeeds with nothing
cleaned by hand. Each stage is taken in turn: unpack, load, stage 1, features, stage 2, MLflow.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.orchestration.resources import EtfSettings
from etf_assets_tests.conftest import (
    INGEST_KEYS,
    REPO,
    Pipeline,
    write_instance_config,
    zip_folder_plain,
)
from etf_assets_tests.oracle import read_expected

MiB = 1024**2
# What a failed step may leave behind at most: DuckDB's file moves in 256 KiB blocks, and the
# warehouse's header or MLflow's database may gain a page or two.
SLACK = 768 * 1024


# --- size-limited filesystems -------------------------------------------------------------------


@pytest.fixture
def mount_small_disk(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`mount(name, size)`: a tmpfs of `size` (e.g. "64m") at tmp_path/name, unmounted after."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(
                f"cannot mount a size-limited tmpfs here ({done.stderr.strip() or done.returncode})"
                "; these tests need root (or CAP_SYS_ADMIN)"
            )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


class Filler:
    """Something else on the disk: a file that takes all (or all but `leave`) free bytes."""

    NAME = "someone-elses-file"

    def __init__(self, disk: Path) -> None:
        self.path = disk / self.NAME

    def fill(self, leave: int = 0) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY)
        try:
            chunk = shutil.disk_usage(self.path.parent).free - leave
            while chunk >= 4096:
                try:  # the disk's writers may take some of what was free meanwhile
                    os.posix_fallocate(fd, os.fstat(fd).st_size, chunk)
                except OSError:
                    chunk //= 2
                else:
                    chunk = shutil.disk_usage(self.path.parent).free - leave
        finally:
            os.close(fd)

    @property
    def bytes(self) -> int:
        return self.path.stat().st_blocks * 512 if self.path.exists() else 0

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def used_by_us(disk: Path, filler: Filler) -> int:
    """The disk's used bytes, not counting the filler."""
    return shutil.disk_usage(disk).used - filler.bytes


@contextmanager
def fill_when(
    condition: Callable[[], bool],
    filler: Filler,
    leave: int = 0,
    timeout: float = 120,
    hold: bool = False,
) -> Iterator[threading.Event]:
    """Fill the disk but for `leave` bytes the moment `condition()` holds (polled every
    millisecond); the event is set once it did. With `hold`, keep taking what is freed (what a
    failed step removes) until the block ends."""
    fired, stop = threading.Event(), threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if condition():
                filler.fill(leave)
                fired.set()
                while hold and not stop.is_set():
                    filler.fill(leave)
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, name="filler", daemon=True)
    watcher.start()
    try:
        yield fired
    finally:
        stop.set()
        watcher.join()


@contextmanager
def fill_on_log(logger: str, pattern: str, filler: Filler) -> Iterator[threading.Event]:
    """Fill the disk when the pipeline logs a line matching `pattern` to `logger`, in the thread
    that logs it: the step goes on into a full disk."""
    fired = threading.Event()

    class Trigger(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not fired.is_set() and re.search(pattern, record.getMessage()):
                filler.fill()
                fired.set()

    target, trigger = logging.getLogger(logger), Trigger(logging.INFO)
    level = target.level
    target.setLevel(logging.INFO)
    target.addHandler(trigger)
    try:
        yield fired
    finally:
        target.removeHandler(trigger)
        target.setLevel(level)


def appears(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: folder.is_dir() and any(folder.glob(pattern))


# --- archives and what the warehouse holds ------------------------------------------------------


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small: a first, working warehouse; medium (and medium2, its symbols with other prices):
    fits the 64 MiB disks with room to spare (about 10 MB of CSV); big: does not fit them (about
    40 MB of CSV).

    They are zipped with bzip2, which unpacks at tens of MB/s where deflate unpacks at hundreds:
    a disk filled the moment an unpack begins is then full long before the unpack could finish,
    as it would be with the real dataset's 3 GB, whatever the machine's speed."""
    root = tmp_path_factory.mktemp("disk-archives")
    found = {}
    for name, spec in {
        "small": SampleSpec(stocks=10, etfs=4, rows=150, seed=11),
        "medium": SampleSpec(stocks=48, etfs=12, rows=1500, seed=12),
        # The same symbols as medium with other prices: every symbol's features are stale.
        "medium2": SampleSpec(stocks=48, etfs=12, rows=1500, seed=14),
        "big": SampleSpec(stocks=200, etfs=40, rows=1500, seed=13),
    }.items():
        generate_folder(spec, root / name)
        found[name] = root / name
        found[f"{name}.zip"] = zip_folder_plain(
            root / name, root / f"{name}.zip", zipfile.ZIP_BZIP2
        )
    return found


def pipeline_on(data_dir: Path, source: Path, tracking: Path | None = None) -> Pipeline:
    pipeline = Pipeline(data_dir, str(source))
    if tracking is not None:
        # A new resource: Dagster builds a run's resources from the values they were created with.
        pipeline.settings = EtfSettings(
            data_dir=str(data_dir),
            source=str(source),
            mlflow_tracking_uri=f"sqlite:///{tracking}/mlflow.db",
        )
    return pipeline


def warehouse_state(pipeline: Pipeline) -> dict[str, object]:
    """Every table's content (as an order-independent hash) and every stage file's bytes."""
    state: dict[str, object] = {}
    with pipeline.connect() as con:
        for (table,) in con.execute("SHOW TABLES").fetchall():
            state[table] = con.execute(
                f"SELECT count(*), bit_xor(hash(t)) FROM {table} AS t"
            ).fetchone()
    parquet = pipeline.data_dir / "parquet"
    for path in sorted(parquet.rglob("*")) if parquet.exists() else []:
        if path.is_file() and path.name != Filler.NAME:
            state[str(path.relative_to(parquet))] = path.read_bytes()
    return state


def failure_of(result: dg.ExecuteInJobResult) -> tuple[str, str]:
    """(step, message) of the run's one failed step."""
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return event.step_key, data.user_failure_data.description
    return event.step_key, data.error.message


def assert_disk_full_message(message: str, folder: Path, disk: Path) -> None:
    first = message.splitlines()[0]
    where = f"The disk is full: no space left on device in {folder} (the filesystem at {disk})"
    assert first.startswith(where), message
    assert "run again" in first and "nothing needs cleaning by hand" in first, message


def assert_refusal(message: str, folder: Path) -> tuple[int, int]:
    """The refusal names the folder, the bytes needed and the bytes free; returns both."""
    match = re.match(
        rf"Not enough disk space in {re.escape(str(folder))}: this step needs about "
        r"([\d,]+) bytes .* and ([\d,]+) bytes .* are free",
        message,
    )
    assert match, message
    needed, free = (int(group.replace(",", "")) for group in match.groups())
    assert needed > 0 and free >= 0
    return needed, free


def price_rows(pipeline: Pipeline) -> int:
    return pipeline.query("SELECT count(*) FROM price_volume_table")[0][0]


# --- know before writing -----------------------------------------------------------------------


def test_raw_zip_refuses_an_archive_the_disk_cannot_hold(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    pipeline = pipeline_on(disk / "data", archives["small.zip"])
    assert pipeline.ingest().success
    before, used = warehouse_state(pipeline), shutil.disk_usage(disk).used

    pipeline.use_source(archives["big.zip"])
    result = pipeline.materialize(INGEST_KEYS, raise_on_error=False)
    assert not result.success
    step, message = failure_of(result)
    assert step == "raw_zip"
    needed, free = assert_refusal(message, pipeline.settings.raw_dir)
    assert needed > free - 16 * MiB
    assert "Nothing was written" in message
    assert shutil.disk_usage(disk).used == used
    assert warehouse_state(pipeline) == before

    pipeline.use_source(archives["small.zip"])  # nothing to clean first
    assert pipeline.ingest().success
    assert price_rows(pipeline) == len(read_expected(archives["small"]).rows)


def test_price_load_refuses_when_table_and_stage_do_not_fit(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    pipeline = pipeline_on(disk / "data", archives["small"])
    assert pipeline.ingest().success
    pipeline.use_source(archives["medium"])  # a folder: raw_zip reads it in place
    assert pipeline.materialize(["raw_zip"]).success
    before, filler = warehouse_state(pipeline), Filler(disk)
    filler.fill(leave=4 * MiB)  # less than the medium load's table and stage take
    used = used_by_us(disk, filler)

    result = pipeline.materialize(["price_volume_table"], raise_on_error=False)
    assert not result.success
    step, message = failure_of(result)
    assert step == "price_volume_table"
    assert_refusal(message, pipeline.data_dir)
    assert "price_volume_table in warehouse.duckdb" in message and "Parquet stage 1" in message
    assert used_by_us(disk, filler) == used
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.materialize(["price_volume_table"]).success
    assert price_rows(pipeline) == len(read_expected(archives["medium"]).rows)


def test_features_refuse_when_their_rows_do_not_fit(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    pipeline = pipeline_on(disk / "data", archives["medium"])
    assert pipeline.ingest().success
    assert pipeline.features().success
    pipeline.use_source(archives["medium2"])  # every symbol's features to compute again
    assert pipeline.ingest().success
    before, filler = warehouse_state(pipeline), Filler(disk)
    filler.fill(leave=4 * MiB)  # less than the medium archive's features take
    used = used_by_us(disk, filler)

    result = pipeline.features(raise_on_error=False)
    assert not result.success
    step, message = failure_of(result)
    assert step == "features_table"
    assert_refusal(message, pipeline.data_dir)
    assert used_by_us(disk, filler) == used
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.features().success


# --- when the disk fills anyway ------------------------------------------------------------------


def test_disk_full_while_unpacking(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    pipeline = pipeline_on(disk / "data", archives["small.zip"])
    assert pipeline.ingest().success
    before, filler = warehouse_state(pipeline), Filler(disk)
    used = used_by_us(disk, filler)

    pipeline.use_source(archives["medium.zip"])
    raw = pipeline.settings.raw_dir
    with fill_when(appears(raw, ".unpacked.pending-*"), filler) as fired:
        result = pipeline.materialize(INGEST_KEYS, raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "raw_zip"
    assert_disk_full_message(message, raw, disk)
    assert not list(raw.glob(".unpacked.*-*"))
    assert used_by_us(disk, filler) <= used + SLACK
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.ingest().success
    assert price_rows(pipeline) == len(read_expected(archives["medium"]).rows)


def test_disk_full_while_loading_the_table(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    pipeline = pipeline_on(disk / "data", archives["small"])
    assert pipeline.ingest().success
    pipeline.use_source(archives["medium"])
    assert pipeline.materialize(["raw_zip"]).success
    before, filler = warehouse_state(pipeline), Filler(disk)
    used = used_by_us(disk, filler)

    # Right before the typed scan writes the load table.
    with fill_on_log("etf_assets.ingest.load_prices", "^reading .* price files", filler) as fired:
        result = pipeline.materialize(["price_volume_table"], raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "price_volume_table"
    assert_disk_full_message(message, pipeline.data_dir, disk)
    assert "price_volume_table, rejected_rows and Parquet stage 1 are as they were" in message
    # The warehouse file gave back what the failed load had grown it by.
    assert used_by_us(disk, filler) <= used + SLACK
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.materialize(["price_volume_table", "symbol_table"]).success
    assert price_rows(pipeline) == len(read_expected(archives["medium"]).rows)


def stages_on_a_disk_of_their_own(mount_small_disk) -> tuple[Path, Path, Path]:
    """A data folder on a small disk whose Parquet stages live on a second one, so that a test
    can fill either the stages or the warehouse: (disk, stages disk, data folder)."""
    disk = mount_small_disk("disk", "64m")
    stages = mount_small_disk("stages", "32m")
    data_dir = disk / "data"
    data_dir.mkdir()
    (data_dir / "parquet").symlink_to(stages)
    return disk, stages, data_dir


def test_disk_full_while_writing_stage_1(mount_small_disk, archives) -> None:
    disk, stages, data_dir = stages_on_a_disk_of_their_own(mount_small_disk)
    pipeline = pipeline_on(data_dir, archives["small"])
    assert pipeline.ingest().success
    pipeline.use_source(archives["medium"])
    assert pipeline.materialize(["raw_zip"]).success
    before, filler, other = warehouse_state(pipeline), Filler(stages), Filler(disk)
    used, used_data = used_by_us(stages, filler), used_by_us(disk, other)

    with fill_when(appears(stages, ".prices.pending-*"), filler) as fired:
        result = pipeline.materialize(["price_volume_table"], raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "price_volume_table"
    assert_disk_full_message(message, data_dir / "parquet", stages)
    assert not list(stages.glob(".prices.*-*"))
    assert used_by_us(stages, filler) <= used + SLACK
    # The load table the scan had committed in the warehouse is gone, and so is its space.
    assert used_by_us(disk, other) <= used_data + SLACK
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.materialize(["price_volume_table", "symbol_table"]).success
    assert price_rows(pipeline) == len(read_expected(archives["medium"]).rows)


def test_disk_full_while_computing_features(mount_small_disk, archives) -> None:
    disk, stages, data_dir = stages_on_a_disk_of_their_own(mount_small_disk)
    pipeline = pipeline_on(data_dir, archives["medium"])
    assert pipeline.ingest().success
    assert pipeline.features().success
    pipeline.use_source(archives["medium2"])
    assert pipeline.ingest().success
    before, filler = warehouse_state(pipeline), Filler(disk)
    used = used_by_us(disk, filler)

    # Right before the first batch is inserted.
    with fill_on_log("etf_assets.features.compute", "symbols changed since", filler) as fired:
        result = pipeline.features(raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "features_table"
    assert_disk_full_message(message, data_dir, disk)
    assert used_by_us(disk, filler) <= used + SLACK
    assert not list(pipeline.settings.features_stage.glob("*.pending"))
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.features().success
    assert pipeline.query("SELECT count(*) FROM features_table") == [(price_rows(pipeline),)]


def test_disk_full_while_writing_stage_2(mount_small_disk, archives) -> None:
    disk, stages, data_dir = stages_on_a_disk_of_their_own(mount_small_disk)
    pipeline = pipeline_on(data_dir, archives["medium"])
    assert pipeline.ingest().success
    assert pipeline.features().success
    pipeline.use_source(archives["medium2"])
    assert pipeline.ingest().success
    before, filler, other = warehouse_state(pipeline), Filler(stages), Filler(disk)
    used, used_data = used_by_us(stages, filler), used_by_us(disk, other)
    features_stage = pipeline.settings.features_stage

    with fill_when(appears(features_stage, "*.pending"), filler) as fired:
        result = pipeline.features(raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "features_table"
    assert_disk_full_message(message, features_stage, stages)
    assert not list(features_stage.glob("*.pending"))
    assert used_by_us(stages, filler) <= used + SLACK
    assert used_by_us(disk, other) <= used_data + SLACK
    assert warehouse_state(pipeline) == before

    filler.release()
    assert pipeline.features().success


def test_disk_full_while_logging_the_model(mount_small_disk, archives) -> None:
    disk = mount_small_disk("disk", "64m")
    store = mount_small_disk("mlflow", "32m")  # the MLflow store on a disk of its own
    pipeline = pipeline_on(disk / "data", archives["small"], tracking=store)
    assert pipeline.ingest().success
    assert pipeline.features().success
    assert pipeline.materialize(["poly_model"]).success
    filler = Filler(store)
    artifacts_before = sorted(str(p) for p in store.rglob("*") if "mlartifacts" in str(p))
    used = used_by_us(store, filler)

    # The first run left two artifact folders (its own and its model's): fill on the next one.
    with fill_when(
        lambda: len([p for p in store.rglob("artifacts") if p.is_dir()]) > 2, filler
    ) as fired:
        result = pipeline.materialize(["poly_model"], raise_on_error=False)
    assert fired.is_set() and not result.success
    step, message = failure_of(result)
    assert step == "poly_model"
    assert_disk_full_message(message, store, store)
    assert sorted(str(p) for p in store.rglob("*") if "mlartifacts" in str(p)) == artifacts_before
    assert used_by_us(store, filler) <= used + SLACK

    from mlflow import MlflowClient

    client = MlflowClient(pipeline.settings.tracking_uri)
    champion = client.get_model_version_by_alias("etf_volume_model", "champion")
    assert str(champion.version) == "1"
    versions = client.search_model_versions("name = 'etf_volume_model'")
    assert [str(v.version) for v in versions] == ["1"]
    experiment = client.get_experiment_by_name("etf_volume").experiment_id
    statuses = sorted(run.info.status for run in client.search_runs([experiment]))
    assert statuses == ["FAILED", "FINISHED"], statuses

    filler.release()
    assert pipeline.materialize(["poly_model"]).success
    assert str(client.get_model_version_by_alias("etf_volume_model", "champion").version) != "1"


# --- DuckDB's file layout, which reclaiming space relies on ---------------------------------------


def test_reclaim_cuts_only_what_duckdb_does_not_use(mount_small_disk) -> None:
    from etf_assets.storage.warehouse_space import HEADER_BYTES, reclaim_warehouse

    disk = mount_small_disk("disk", "32m")
    database = disk / "w.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE kept AS SELECT range AS i, random() AS x FROM range(500000)")
        con.execute("CHECKPOINT")
        block_size, blocks = con.execute("PRAGMA database_size").fetchone()[2:4]
        expected = con.execute("SELECT count(*), bit_xor(hash(i, x)) FROM kept").fetchone()
    assert database.stat().st_size == HEADER_BYTES + block_size * blocks  # the layout assumed
    clean = database.stat().st_size

    with duckdb.connect(str(database)) as con:
        with pytest.raises(duckdb.IOException, match="No space left on device"):
            con.execute("CREATE TABLE big AS SELECT range AS i, random() AS x FROM range(10000000)")
    grown = database.stat().st_size
    assert shutil.disk_usage(disk).free < MiB  # the failed write left the file filling the disk

    assert reclaim_warehouse(database) == grown - clean
    assert database.stat().st_size == clean
    with duckdb.connect(str(database)) as con:
        assert con.execute("SELECT count(*), bit_xor(hash(i, x)) FROM kept").fetchone() == expected
        con.execute("CREATE TABLE more AS SELECT range AS i FROM range(1000)")  # still writable


def test_spill_files_of_a_query_that_fills_the_disk_go(mount_small_disk) -> None:
    """DuckDB spills to `<warehouse>.duckdb.tmp` beside the warehouse; a spill that finds the disk
    full fails as "out of memory" in DuckDB's words: the step must still say the disk is full."""
    from etf_assets.orchestration.disk_guard import failing_clearly_on_full_disk
    from etf_assets.orchestration.resources import Warehouse

    disk = mount_small_disk("disk", "48m")
    database = disk / "warehouse.duckdb"
    warehouse = Warehouse(
        database=str(database), connection_config={"memory_limit": "40MB", "threads": "2"}
    )
    with warehouse.get_connection() as con:
        con.execute("CREATE TABLE kept AS SELECT range AS i FROM range(1000)")
        con.execute("CHECKPOINT")
    used = shutil.disk_usage(disk).used

    with pytest.raises(dg.Failure) as failure:
        with (
            failing_clearly_on_full_disk(
                "sorting", [disk], "The warehouse is as it was", warehouse=database
            ),
            warehouse.get_connection() as con,
        ):
            con.execute(
                """CREATE TABLE sorted AS SELECT range AS i, md5(range::VARCHAR) AS h
                   FROM range(4000000) ORDER BY h"""
            )
    assert_disk_full_message(failure.value.description, disk, disk)
    assert shutil.disk_usage(disk).used <= used + SLACK
    spill = disk / "warehouse.duckdb.tmp"
    assert not spill.exists() or not any(spill.iterdir())
    with warehouse.get_connection() as con:
        assert con.execute("SELECT count(*) FROM kept").fetchone() == (1000,)
        assert "sorted" not in {row[0] for row in con.execute("SHOW TABLES").fetchall()}


# --- `make run` on a small disk, the instance's Postgres on it too --------------------------------


def run_pipeline(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "etf_assets.orchestration.run_pipeline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_statuses(home: Path, url: str) -> list[dg.DagsterRunStatus]:
    """The status of every run in the instance, newest first."""
    from etf_assets.orchestration import instance_db

    os.environ[instance_db.PG_URL_ENV] = url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return [run.status for run in instance.get_runs()]
    finally:
        del os.environ[instance_db.PG_URL_ENV]


def test_make_run_on_a_full_disk_fails_clearly_and_then_succeeds(
    mount_small_disk, archives
) -> None:
    """As the issue was checked from outside: `make run`'s runner with its data folder and the
    instance's Postgres on one small disk, which fills up; then run again, cleaning nothing."""
    from etf_assets.orchestration import instance_db

    disk = mount_small_disk("disk", "256m")
    data_dir = disk / "data"
    raw = data_dir / "raw"
    home = write_instance_config(data_dir / "dagster_home")
    url = instance_db.start(home=home)
    filler = Filler(disk)
    env = {
        **os.environ,
        "ETF_DATA_DIR": str(data_dir),
        "ETF_SOURCE": str(archives["small.zip"]),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": url,
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        first = run_pipeline(env)
        assert first.returncode == 0, first.stderr[-3000:]

        # Another program leaves a few MB while the big archive unpacks: the unpack fails, and
        # the instance's database, on the same disk, records why.
        env["ETF_SOURCE"] = str(archives["big.zip"])
        with fill_when(appears(raw, ".unpacked.pending-*"), filler, leave=6 * MiB) as fired:
            failed = run_pipeline(env)
        assert fired.is_set() and failed.returncode != 0
        tail = failed.stderr.strip().splitlines()[-2:]
        assert tail[0].startswith("ingest_job failed"), failed.stderr[-3000:]
        assert tail[1].startswith(f"  raw_zip: The disk is full: no space left on device in {raw}")
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        assert not list(raw.glob(".unpacked.*-*"))
        assert run_statuses(home, url)[0] == dg.DagsterRunStatus.FAILURE
        filler.release()

        # It takes everything, and what the failed unpack frees: the instance's database cannot
        # record the run either.
        with fill_when(appears(raw, ".unpacked.pending-*"), filler, hold=True) as fired:
            failed = run_pipeline(env)
        assert fired.is_set() and failed.returncode != 0
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ingest_job stopped: the disk is full"), failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        filler.release()

        # With other files on the disk, the big archive is refused before anything is written,
        # and the run that could not be recorded is marked failed first.
        filler.fill(leave=64 * MiB)
        used = used_by_us(disk, filler)
        refused = run_pipeline(env)
        assert refused.returncode != 0
        assert "marked 1 abandoned run(s) failed" in refused.stdout
        assert f"raw_zip: Not enough disk space in {raw}" in refused.stderr, refused.stderr[-3000:]
        assert abs(used_by_us(disk, filler) - used) < 4 * MiB  # the instance's own writes
        assert dg.DagsterRunStatus.STARTED not in run_statuses(home, url)
        filler.release()

        again = run_pipeline(env)  # the same archive, nothing cleaned by hand
        assert again.returncode == 0, again.stderr[-3000:]
        with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
            rows = con.execute("SELECT count(*) FROM price_volume_table").fetchone()[0]
        assert rows == len(read_expected(archives["big"]).rows)
    finally:
        filler.release()
        instance_db.stop(home=home)
