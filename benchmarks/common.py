"""Shared pieces of the benchmarks: the full-scale archive, timing in a fresh process, printing."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder, zip_folder

# The real dataset: 5,884 stock and 2,165 ETF files (8,049 with the meta file's symbols).
FULL_SCALE = SampleSpec(stocks=5884, etfs=2165, rows=3500, seed=42)
BENCH_DIR = Path(os.environ.get("ETF_BENCH_DIR", "/tmp/etf-bench"))
# Timings on a shared 2-core VM swing by 25% within minutes: a step and its reference are timed
# in alternating order this many times, and compared round by round.
ROUNDS = int(os.environ.get("ETF_BENCH_ROUNDS", "3"))


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_mb: float
    note: str = ""


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not survive exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed_child(fn: Callable[..., object], args: tuple) -> tuple[float, float, object]:
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    return seconds, _peak_rss_mb(), result


def measure(label: str, fn: Callable[..., object], *args: object) -> tuple[Measurement, object]:
    """Run `fn(*args)` in a fresh interpreter so its time and peak memory are its own."""
    os.sync()  # the previous step's dirty pages are not written back on this step's time
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds, peak_mb, result = pool.apply(_timed_child, (fn, args))
    return Measurement(label, seconds, peak_mb), result


@dataclass(frozen=True)
class Step:
    label: str
    fn: Callable[..., object]
    args: tuple = ()
    prepare: Callable[[], None] | None = None  # run before each timing, not timed


def measure_alternating(
    steps: list[Step], rounds: int = ROUNDS
) -> dict[str, list[tuple[Measurement, object]]]:
    """Time every step `rounds` times, reversing their order every other round, so that no step
    always runs first; return each step's (measurement, result) pairs, round by round."""
    timings: dict[str, list[tuple[Measurement, object]]] = {step.label: [] for step in steps}
    for number in range(rounds):
        for step in steps if number % 2 == 0 else steps[::-1]:
            if step.prepare is not None:
                step.prepare()
            timings[step.label].append(measure(step.label, step.fn, *step.args))
    return timings


def median_of(runs: list[Measurement], note: str = "") -> Measurement:
    """One row for the table: the median time and the highest peak of `runs`, with every time."""
    times = ", ".join(f"{m.seconds:.1f}" for m in runs)
    return Measurement(
        runs[0].label,
        statistics.median(m.seconds for m in runs),
        max(m.peak_mb for m in runs),
        f"median of {times} s" + (f"; {note}" if note else ""),
    )


def print_round_ratios(ours: list[Measurement], reference: list[Measurement]) -> None:
    ratios = [o.seconds / r.seconds for o, r in zip(ours, reference, strict=True)]
    print(
        f"  {ours[0].label} / {reference[0].label}, round by round: "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        + f"; median {statistics.median(ratios):.2f}x"
    )


def warm_page_cache(*paths: Path) -> None:
    """Read every file under `paths` once, so that the step timed next and its reference both
    start with their input in the page cache (otherwise whichever runs first pays the disk)."""
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            with open(file, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def full_scale_archive() -> tuple[Path, Path]:
    """The full-scale generated archive as (folder, zip), generated once and reused."""
    folder, archive = BENCH_DIR / "full", BENCH_DIR / "full.zip"
    stamp = BENCH_DIR / "full.spec.json"
    wanted = json.dumps(FULL_SCALE.__dict__, sort_keys=True)
    if not (stamp.is_file() and stamp.read_text() == wanted and archive.is_file()):
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate_folder(FULL_SCALE, folder)
        generated = time.perf_counter() - start
        zip_folder(folder, archive)
        print(
            f"generated {folder} in {generated:.0f} s, zipped in "
            f"{time.perf_counter() - start - generated:.0f} s"
        )
        stamp.write_text(wanted)
    return folder, archive


def await_full_scale_archive(
    poll_seconds: float = 5.0, stale_seconds: float = 300.0
) -> tuple[Path, Path]:
    """`full_scale_archive()`, after waiting for a generation another process has under way.

    That process writes the zip as `full.zip.partial`, renames it when complete and then writes
    the stamp; calling `full_scale_archive()` before the stamp exists would generate it a second
    time. A partial file that has not grown for `stale_seconds` is a generation that died.
    """
    partial, archive = BENCH_DIR / "full.zip.partial", BENCH_DIR / "full.zip"
    stamp = BENCH_DIR / "full.spec.json"
    announced = False
    while True:
        try:
            growing = time.time() - partial.stat().st_mtime < stale_seconds
        except FileNotFoundError:
            growing = False
        # Between the rename and the stamp there is only the generator's print statement.
        stamping = (
            archive.is_file() and not stamp.is_file() and time.time() - archive.stat().st_mtime < 60
        )
        if not (growing or stamping):
            return full_scale_archive()
        if not announced:
            print(f"waiting for the archive being generated in {BENCH_DIR}", flush=True)
            announced = True
        time.sleep(poll_seconds)


def print_table(title: str, rows: list[Measurement], reference: str) -> None:
    """Print the measurements side by side, each as a ratio to the row labelled `reference`."""
    base = next(m.seconds for m in rows if m.label == reference)
    print(f"\n{title}")
    print(f"  {'':44} {'seconds':>8} {'vs ' + reference[:14]:>18} {'peak MB':>9}")
    for m in rows:
        print(
            f"  {m.label:44} {m.seconds:8.1f} {m.seconds / base:17.2f}x {m.peak_mb:9.0f}  {m.note}"
        )
