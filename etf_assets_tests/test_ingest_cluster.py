"""Loading prices with the parsing done on a real Dask cluster, a task per shard of files, against
the in-process load of the same archive as the reference: tables, Parquet stage 1, rejected rows
and report must be equal."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from etf_assets.cluster.tasks import ClusterWork, connected
from etf_assets.constants import META_FILE, PRICE_HEADER, PRICE_VOLUME_TABLE, REJECTED_ROWS_TABLE
from etf_assets.ingest.load_prices import LoadReport, list_price_files, load_prices
from etf_assets.ingest.shards import (
    REJECTS_FILE,
    ROWS_FILE,
    SHARD_BYTES,
    PriceFile,
    ingest_shard,
    plan_shards,
)


@dataclass
class Loaded:
    """Everything a load leaves, rows sorted so that order does not matter."""

    report: LoadReport
    rows: dict[str, list[tuple]]  # table or "stage" -> rows
    columns: dict[str, list[tuple]]  # table -> DESCRIBE
    stage_schema: pa.Schema
    data_dir: Path


def load(root: Path, data_dir: Path, cluster=None, shard_bytes: int = SHARD_BYTES) -> Loaded:
    stage = data_dir / "parquet" / "prices"
    data_dir.mkdir(parents=True)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        report = load_prices(con, root, stage, cluster, shard_bytes=shard_bytes)
        tables = [PRICE_VOLUME_TABLE, REJECTED_ROWS_TABLE]
        rows = {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in tables
        }
        rows["stage"] = con.execute(
            f"SELECT * FROM read_parquet('{stage}/*.parquet') ORDER BY ALL"
        ).fetchall()
        columns = {table: con.execute(f"DESCRIBE {table}").fetchall() for table in tables}
    [stage_file] = stage.glob("*.parquet")
    return Loaded(report, rows, columns, pq.read_schema(stage_file), data_dir)


def load_on_cluster(
    address: str, root: Path, data_dir: Path, shard_bytes: int = SHARD_BYTES
) -> tuple[Loaded, ClusterWork]:
    with connected(address) as cluster:
        loaded = load(root, data_dir, cluster, shard_bytes)
    return loaded, cluster.work


def assert_same_load(cluster_load: Loaded, local_load: Loaded) -> None:
    assert cluster_load.report == local_load.report
    for name, rows in local_load.rows.items():
        assert len(cluster_load.rows[name]) == len(rows), name
        assert cluster_load.rows[name] == rows, name
    assert cluster_load.columns == local_load.columns
    assert cluster_load.stage_schema == local_load.stage_schema
    # The shards' folder goes once loaded; the data folder holds what a local load leaves.
    listing = sorted(p.name for p in (cluster_load.data_dir / "parquet").iterdir())
    assert listing == sorted(p.name for p in (local_load.data_dir / "parquet").iterdir())


def quirky_archive(sample_dir: Path, root: Path) -> Path:
    """The generated sample (its quirks: blank rows, bad values, duplicate dates, a binary file, a
    header-only file, a file without meta row) and files that only the line-by-line path or the
    listing rejects: dates out of order, bytes that are not UTF-8 after a good header, no header."""
    shutil.copytree(sample_dir, root)
    prices = sorted(p for p in (root / "stocks").glob("*.csv") if p.stat().st_size > 10_000)
    header, *lines = prices[-1].read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    (root / "stocks" / "ZZUNORD.csv").write_text("\n".join([header, *lines]) + "\n")
    (root / "stocks" / "ZZBYTES.csv").write_bytes(
        f"{PRICE_HEADER}\n{lines[0]}\n".encode() + b"2020-01-03,1.0,\xff\xfe,1.0,1.0,1.0,100\n"
    )
    (root / "etfs" / "ZZEMPTY.csv").write_bytes(b"")
    return root


def test_excerpt_cluster_load_equals_local(excerpt_dir: Path, dask_cluster, tmp_path) -> None:
    local = load(excerpt_dir, tmp_path / "local")
    assert local.report.blank_rows_skipped == 1 and local.report.files_rejected == 1
    files, _ = list_price_files(excerpt_dir)

    remote, work = load_on_cluster(dask_cluster.address, excerpt_dir, tmp_path / "cluster")

    assert_same_load(remote, local)
    # Less than SHARD_BYTES in all, yet split for both workers: 4 tasks each, at most one per file.
    assert work.tasks == {"ingest-shard": len(files)}
    assert len(work.workers) == 2


def test_generated_archive_cluster_load_equals_local(sample_dir: Path, dask_cluster, tmp_path):
    root = quirky_archive(sample_dir, tmp_path / "archive")
    local = load(root, tmp_path / "local")
    reasons = {reason for _, _, reason, _ in local.rows[REJECTED_ROWS_TABLE]}
    assert {"not UTF-8 text", "empty file: no header", "Volume: negative: -500"} <= reasons
    assert any(reason.startswith("duplicate date") for reason in reasons)
    assert local.report.rows_rejected >= 5 and local.report.blank_rows_skipped == 2
    assert "stocks/ZZUNORD.csv" in local.report.files_without_meta
    files, _ = list_price_files(root)
    shard_bytes = sum(f.size for f in files) // 16

    remote, work = load_on_cluster(dask_cluster.address, root, tmp_path / "cluster", shard_bytes)

    assert_same_load(remote, local)
    assert work.tasks == {"ingest-shard": len(plan_shards(files, shard_bytes))}
    assert work.tasks["ingest-shard"] >= 16
    assert len(work.workers) == 2


def test_shard_task_run_again_leaves_one_copy(sample_dir: Path, dask_cluster, tmp_path) -> None:
    files, _ = list_price_files(sample_dir)
    # A shard from the file with blank rows to the one with bad rows, so that it rejects some.
    texts = [Path(f.path).read_text() for f in files]
    quirky = [n for n, text in enumerate(texts) if ",,,,,," in text or "2020-13-45" in text]
    first = min(quirky)
    shard = files[first : max(quirky) + 1]
    meta = str(sample_dir / META_FILE)
    reference = tmp_path / "reference"
    counts = ingest_shard(meta, shard, first, str(reference))
    folder = tmp_path / "shard-00001"

    with connected(dask_cluster.address) as cluster:
        # Two attempts at once (one per worker), then one more: as when a worker that died holding
        # the task had written part of its output, or all of it.
        attempts = cluster.run(
            "ingest-shard", ingest_shard, [(meta, shard, first, str(folder))] * 2
        )
        attempts += cluster.run("ingest-shard", ingest_shard, [(meta, shard, first, str(folder))])

    assert attempts == [counts] * 3
    assert counts.blank_lines == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([REJECTS_FILE, ROWS_FILE])
    for name in (ROWS_FILE, REJECTS_FILE):
        assert sorted_rows(folder / name) == sorted_rows(reference / name), name
    rows, rejects = sorted_rows(folder / ROWS_FILE), sorted_rows(folder / REJECTS_FILE)
    assert len(rows) == counts.rows_in_archive - counts.blank_lines - len(rejects) > 0
    file_ids = {row[-1] for row in rows}  # as the run numbers the files
    assert min(file_ids) == first and max(file_ids) == first + len(shard) - 1


def sorted_rows(path: Path) -> list[tuple]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL").fetchall()


def test_shards_are_consecutive_files_of_about_equal_bytes() -> None:
    sizes = [(position * 37) % 101 + 1 for position in range(200)]
    files = [
        PriceFile(f"S{n}", f"stocks/S{n}.csv", f"/x/S{n}.csv", size) for n, size in enumerate(sizes)
    ]

    for shard_bytes, min_shards, expected in [(700, 1, math.ceil(sum(sizes) / 700)), (10**9, 7, 7)]:
        shards = plan_shards(files, shard_bytes, min_shards)
        assert [p for shard in shards for p in shard] == list(range(len(files)))
        assert len(shards) == expected
        mean = sum(sizes) / len(shards)
        assert all(abs(sum(sizes[p] for p in shard) - mean) <= max(sizes) for shard in shards)

    one_large = [PriceFile("L", "stocks/L.csv", "/x/L.csv", 10**6), *files[:3]]
    assert plan_shards(one_large, 1000, 4) == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]
    assert plan_shards(files[:2], 1, 8) == [range(0, 1), range(1, 2)]
    assert plan_shards(files, 10**9) == [range(0, len(files))]
