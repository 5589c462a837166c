"""End to end at full scale, the figure that counts: `make run` exactly as a user runs it (warm
virtualenv, fresh data folder, the full-scale archive as `ETF_SOURCE`), next to
`reference_pipeline.py`, a plain polars + scikit-learn script doing the same work, in the same run.

Both run as fresh processes under GNU time (`/usr/bin/time -f '%e %M %U %S'`): wall seconds, the
peak resident memory of the largest single process in the tree (ru_maxrss of the waited-for
descendants; memory of processes running side by side is not summed, and a daemon that detaches,
such as a Postgres server, is not counted), and the tree's CPU seconds with the load average
around each, because one round on a shared machine can be slowed by others' work.

Then the work both did, with the number of `features_table` partitions next to the number of
symbols with rows; where `make run`'s time went, from the Dagster instance's event log: each run's
start -> end, each step with the cores the machine kept busy meanwhile (sampled from /proc/stat,
every process included), the orchestrator's bookkeeping around the steps, the per-partition
events, and the wall time outside any run. Last, the floor that `make run`'s CPU time sets on its
wall time on this machine's cores, against the reference, and how long fewer cores were busy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from benchmarks.common import BENCH_DIR, Measurement, await_full_scale_archive, warm_page_cache

REPO = Path(__file__).resolve().parents[1]
WORK = BENCH_DIR / "end_to_end"
DATA_DIR = WORK / "make_run_data"
REFERENCE_DIR = WORK / "reference"
TIMEOUT_SECONDS = 3600
TARGET, LONG_TERM_TARGET = 0.8, 0.5
# Left by a caller (`make bench` exports MAKEFLAGS and MAKELEVEL; a shell may point MLflow or
# Dagster elsewhere), each would make the timed `make run` differ from a user's.
NOT_INHERITED = (
    "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DAGSTER_PG_URL", "MLFLOW_TRACKING_URI",
    "ETF_DASK_SCHEDULER",
)  # fmt: skip


class BusyCores:
    """How many of the machine's cores are busy (every process, from /proc/stat), sampled every
    `interval` seconds while the `with` block runs; nothing where /proc/stat does not exist."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (end of the interval, busy cores)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _busy_and_total() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as stat:
                ticks = [int(v) for v in stat.readline().split()[1:9]]  # without guest time
        except (OSError, ValueError):
            return None
        idle = ticks[3] + ticks[4]  # idle, iowait
        return sum(ticks) - idle, sum(ticks)

    def _sample(self) -> None:
        before = self._busy_and_total()
        while before is not None and not self._stop.wait(self.interval):
            after = self._busy_and_total()
            if after is None or after[1] == before[1]:
                continue
            share = (after[0] - before[0]) / (after[1] - before[1])
            self.samples.append((time.time(), share * (os.cpu_count() or 1)))
            before = after

    def __enter__(self) -> BusyCores:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def average(self, start: float, end: float) -> float | None:
        """The mean busy cores of the samples taken between `start` and `end` (epoch seconds)."""
        inside = [cores for at, cores in self.samples if start < at <= end + self.interval]
        return sum(inside) / len(inside) if inside else None

    def seconds_below(self, cores: float, start: float, end: float) -> float:
        """Wall seconds between `start` and `end` during which fewer than `cores` were busy."""
        below = [c for at, c in self.samples if start < at <= end and c < cores]
        return len(below) * self.interval


@dataclass
class Timed:
    measurement: Measurement
    started: float  # epoch seconds, to place the Dagster events on the same clock
    ended: float
    stdout: str
    cpu_seconds: float  # user + system of the waited-for tree: what wall time hides on a busy box
    load: tuple[float, float]  # 1-minute load average when it started and when it ended
    busy: BusyCores


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(overrides)
    return env


def run_timed(label: str, command: list[str], env: dict[str, str], stem: Path) -> Timed:
    """Run `command` in a fresh session under GNU time, its output in `stem`.out and .err."""
    out, err, times = (stem.with_suffix(suffix) for suffix in (".out", ".err", ".time"))
    os.sync()  # the previous step's dirty pages are not written back on this step's time
    started, load_before = time.time(), os.getloadavg()[0]
    with open(out, "wb") as stdout, open(err, "wb") as stderr, BusyCores() as busy:
        process = subprocess.Popen(
            ["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(times), *command],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            process.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"{label} took more than {TIMEOUT_SECONDS} s; see {err}") from None
    ended = time.time()
    if process.returncode != 0:
        tail = "\n".join(err.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{label} failed ({process.returncode}); end of {err}:\n{tail}")
    # GNU time's line is the file's last: for a failing command it writes the status before it.
    seconds, max_rss_kb, user, system = times.read_text().split()[-4:]
    return Timed(
        Measurement(label, float(seconds), int(max_rss_kb) / 1024),
        started,
        ended,
        out.read_text(errors="replace"),
        float(user) + float(system),
        (load_before, os.getloadavg()[0]),
        busy,
    )


def ensure_installed() -> None:
    """The benchmark times a warm `make run`: install first, untimed, if make would."""
    check = subprocess.run(["make", "-q", ".venv/.installed"], cwd=REPO, env=_clean_env())
    if check.returncode != 0:
        print("the virtualenv is out of date: `make install` first, untimed", flush=True)
        subprocess.run(["make", "install"], cwd=REPO, env=_clean_env(), check=True)


def time_make_run(
    archive: Path, data_dir: Path = DATA_DIR, label: str = "make run", **settings: str
) -> Timed:
    """`make run` from a fresh `data_dir`, with `settings` added to its environment; its output
    in WORK/<data_dir's name>.out and .err."""
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = _clean_env(
        ETF_SOURCE=str(archive),
        ETF_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(data_dir / "dagster_home"),
        **settings,
    )
    warm_page_cache(archive)
    return run_timed(label, ["make", "run"], env, WORK / data_dir.name.removesuffix("_data"))


def time_reference(archive: Path) -> tuple[Timed, dict]:
    shutil.rmtree(REFERENCE_DIR, ignore_errors=True)
    REFERENCE_DIR.mkdir(parents=True)
    warm_page_cache(archive)
    command = [sys.executable, str(REPO / "benchmarks" / "reference_pipeline.py")]
    timed = run_timed(
        "polars + scikit-learn script",
        [*command, str(archive), str(REFERENCE_DIR)],
        _clean_env(),
        WORK / "reference_script",
    )
    return timed, json.loads(timed.stdout.strip().splitlines()[-1])


# --- the Dagster instance make run left -------------------------------------------------------


@contextlib.contextmanager
def make_run_instance(dagster_home: Path) -> Iterator[object]:
    """The instance `make run` wrote, opened as `make run` opens it: with its Postgres server
    started (and stopped afterwards) when dagster.yaml keeps the instance there."""
    import dagster as dg
    import yaml

    # The settings, not their comments: `storage: postgres:` or a dagster_postgres module.
    settings = yaml.safe_load((dagster_home / "dagster.yaml").read_text()) or {}
    uses_postgres = "postgres" in json.dumps(settings)
    env = _clean_env(ETF_DATA_DIR=str(dagster_home.parent), DAGSTER_HOME=str(dagster_home))
    # As `make run` does, this process holds the server while it reads: a `make dev` on the same
    # folder keeps it running after our stop.
    holder = ["--holder", str(os.getpid())]
    instance_db = [sys.executable, "-m", "etf_assets.orchestration.instance_db"]
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DAGSTER_PG_URL")}
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        if uses_postgres:
            started = subprocess.run(
                [*instance_db, "start", *holder], cwd=REPO, env=env, capture_output=True, text=True
            )
            if started.returncode != 0:
                raise RuntimeError(f"instance_db start failed: {started.stderr.strip()}")
            os.environ["DAGSTER_PG_URL"] = started.stdout.strip().splitlines()[-1]
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if uses_postgres:
            # Without DAGSTER_PG_URL in its environment, `stop` stops the bundled server.
            subprocess.run([*instance_db, "stop", *holder], cwd=REPO, env=env, check=False)


@dataclass
class StepTimes:
    key: str
    start: float
    end: float
    outcome: str


@dataclass
class RunTimes:
    job: str
    status: str
    created: float
    start: float
    end: float
    last_event: float
    events: int
    # Per-partition events (count, first, last timestamp): one of each per symbol in features_job.
    planned: tuple[int, float, float]
    materialized: tuple[int, float, float]
    steps: list[StepTimes] = field(default_factory=list)


def _span(timestamps: list[float]) -> tuple[int, float, float]:
    if not timestamps:
        return 0, float("nan"), float("nan")
    return len(timestamps), min(timestamps), max(timestamps)


def run_times(instance) -> list[RunTimes]:  # noqa: ANN001  (a DagsterInstance)
    import dagster as dg

    kind = dg.DagsterEventType
    run_ends = {kind.RUN_SUCCESS, kind.RUN_FAILURE, kind.RUN_CANCELED}
    step_ends = {kind.STEP_SUCCESS: "", kind.STEP_FAILURE: " (failed)"}
    runs = []
    for record in instance.get_run_records(ascending=True):
        run = record.dagster_run
        logs = instance.all_logs(run.run_id)
        start = end = float("nan")
        step_starts: dict[str, float] = {}
        steps: list[StepTimes] = []
        planned: list[float] = []
        materialized: list[float] = []
        for entry in logs:
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == kind.RUN_START:
                start = entry.timestamp
            elif event.event_type in run_ends:
                end = entry.timestamp
            elif event.event_type == kind.STEP_START:
                step_starts[entry.step_key] = entry.timestamp
            elif event.event_type in step_ends:
                steps.append(
                    StepTimes(
                        entry.step_key,
                        step_starts.get(entry.step_key, float("nan")),
                        entry.timestamp,
                        step_ends[event.event_type],
                    )
                )
            elif event.event_type == kind.ASSET_MATERIALIZATION_PLANNED:
                planned.append(entry.timestamp)
            elif event.event_type == kind.ASSET_MATERIALIZATION:
                materialized.append(entry.timestamp)
        runs.append(
            RunTimes(
                job=run.job_name,
                status=run.status.value,
                created=record.create_timestamp.timestamp(),
                start=start,
                end=end,
                last_event=max((e.timestamp for e in logs), default=end),
                events=len(logs),
                planned=_span(planned),
                materialized=_span(materialized),
                steps=sorted(steps, key=lambda s: s.start),
            )
        )
    return runs


# --- printing ----------------------------------------------------------------------------------


def print_side_by_side(ours: Timed, reference: Timed) -> None:
    a, b = ours.measurement, reference.measurement
    ratio = a.seconds / b.seconds
    print(f"  {'':34} {'seconds':>8} {'peak GB':>8} {'CPU s':>8}  1-min load at start, end")
    for t in (ours, reference):
        m = t.measurement
        print(
            f"  {m.label:34} {m.seconds:8.1f} {m.peak_mb / 1024:8.1f} {t.cpu_seconds:8.1f}"
            f"  {t.load[0]:.1f}, {t.load[1]:.1f}"
        )
    print(
        f"  {'ratio (make run / reference)':34} {ratio:7.2f}x {a.peak_mb / b.peak_mb:7.2f}x "
        f"{ours.cpu_seconds / reference.cpu_seconds:7.2f}x"
    )
    verdict = "met" if ratio <= TARGET else "not met"
    print(f"  time target <= {TARGET}x (long term {LONG_TERM_TARGET}x): {verdict}")


def _line(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:58} {seconds:8.1f}" + (f"  {note}" if note else ""))


def _cores(busy: BusyCores, start: float, end: float) -> str:
    cores = busy.average(start, end)
    return "" if cores is None else f"{cores:.1f} cores busy"


def print_runs(runs: list[RunTimes], make_run: Timed) -> None:
    print("\nmake run's runs, from the Dagster event log (seconds)")
    for run in runs:
        print(f"  {run.job} ({run.status}, {run.events:,} events)")
        _line("  run created -> run start (planning, before the run)", run.start - run.created)
        count, first_event, last_event = run.planned
        if count > 1:
            _line(
                f"    {count:,} materializations planned, first -> last", last_event - first_event
            )
        _line("  run start -> run end", run.end - run.start)
        if run.steps:
            first, last = run.steps[0].start, max(s.end for s in run.steps)
            _line("    run start -> first step start", first - run.start)
            count, first_event, last_event = run.materialized
            for step in run.steps:
                _line(
                    f"    step {step.key}{step.outcome}",
                    step.end - step.start,
                    _cores(make_run.busy, step.start, step.end),
                )
                # A partitioned step's materializations: its work, then its events.
                if count > 1 and step.start <= first_event and last_event <= step.end:
                    _line(
                        f"      step start -> first of {count:,} materializations",
                        first_event - step.start,
                    )
                    _line(
                        "      first -> last materialization",
                        last_event - first_event,
                        _cores(make_run.busy, first_event, last_event),
                    )
            covered = sum(s.end - s.start for s in run.steps)
            _line("    first step start -> last step end, outside steps", last - first - covered)
            _line("    last step end -> run end", run.end - last)
        _line("  run end -> its last event", run.last_event - run.end)
    # Runs are sequential: everything of the wall time outside their start -> end is process
    # starts, code location loads, run creation, the partition range and the summary.
    edges = [make_run.started, *[t for r in runs for t in (r.start, r.end)], make_run.ended]
    gaps = [edges[i + 1] - edges[i] for i in range(0, len(edges), 2)]
    names = ["before the first run's start"]
    names += [
        f"between {a.job} end and {b.job} start" for a, b in zip(runs, runs[1:], strict=False)
    ]
    names += ["after the last run's end (CLI exit, summary)"]
    wall = make_run.ended - make_run.started
    print("\nmake run's wall time outside any run's start -> end (seconds)")
    planning = [f"of which {r.job} created -> start {r.start - r.created:.1f}" for r in runs]
    for name, gap, note in zip(names, gaps, [*planning, ""], strict=True):
        _line(name, gap, note)
    _line("total", sum(gaps), f"of {wall:.1f} s wall ({sum(gaps) / wall:.0%})")


def print_floor(ours: Timed, reference: Timed) -> None:
    """What make run's CPU time allows on this machine's cores, and how long it left one idle."""
    cores = os.cpu_count() or 1
    floor = ours.cpu_seconds / cores
    ratio = floor / reference.measurement.seconds
    print(f"\nmake run's CPU time against the target, on {cores} cores")
    _line(
        "make run's CPU seconds / cores: its wall time at best",
        floor,
        f"{ratio:.2f}x the reference's wall time",
    )
    if ours.busy.samples:
        below = ours.busy.seconds_below(cores - 0.5, ours.started, ours.ended)
        _line(f"wall time with fewer than {cores - 0.5:g} cores busy", below)


def print_work(make_run_counts: dict, reference_counts: dict, partitions: int) -> None:
    print(f"\n  {'work done':34} {'make run':>12} {'reference':>12}")
    for key, label in (
        ("rows", "price rows in stage 2"),
        ("symbols", "symbols with rows"),
        ("model_rows", "rows fitted (both features)"),
    ):
        print(f"  {label:34} {make_run_counts[key]:12,} {reference_counts[key]:12,}")
    same = "every symbol" if partitions == make_run_counts["symbols"] else "NOT every symbol"
    print(f"  {'features_table partitions':34} {partitions:12,} {'-':>12}  ({same} is one)")


def make_run_counts() -> dict:
    with duckdb.connect(str(DATA_DIR / "warehouse.duckdb"), read_only=True) as con:
        rows, symbols, model_rows = con.execute(
            """SELECT count(*), count(DISTINCT symbol),
                      count(*) FILTER (vol_moving_avg IS NOT NULL
                                       AND adj_close_rolling_med IS NOT NULL)
               FROM features_table"""
        ).fetchone()
    return {"rows": rows, "symbols": symbols, "model_rows": model_rows}


def reference_counts(model_rows: int) -> dict:
    rows, symbols = duckdb.execute(
        'SELECT count(*), count(DISTINCT "Symbol") FROM read_parquet($p)',
        {"p": str(REFERENCE_DIR / "stage2" / "*.parquet")},
    ).fetchone()
    return {"rows": rows, "symbols": symbols, "model_rows": model_rows}


def main(archive: Path | None = None) -> None:
    """Benchmark on `archive`, by default the full-scale one."""
    if archive is None:
        _, archive = await_full_scale_archive()
    ensure_installed()
    WORK.mkdir(parents=True, exist_ok=True)
    ours = time_make_run(archive)
    with make_run_instance(DATA_DIR / "dagster_home") as instance:
        import dagster as dg

        runs = run_times(instance)
        partitions = len(instance.get_materialized_partitions(dg.AssetKey("features_table")))
    ours_counts = make_run_counts()
    reference, summary = time_reference(archive)
    ref_counts = reference_counts(summary["model_rows"])
    shutil.rmtree(REFERENCE_DIR)  # 3 GB unpacked and 1 GB of Parquet nobody reads again

    print(
        f"\nEnd to end, {archive.name} ({archive.stat().st_size / 1e9:.1f} GB zipped); "
        "wall time, largest process's peak RSS and CPU time from GNU time"
    )
    print_side_by_side(ours, reference)
    phases = ", ".join(f"{name} {s:.1f}" for name, s in summary["seconds"].items())
    print(f"  reference's own phases (s): {phases}; the rest is interpreter start and imports")
    print_work(ours_counts, ref_counts, partitions)
    print_runs(runs, ours)
    print_floor(ours, reference)
    print(f"\n  make run's output: {WORK}/make_run.out and .err; its runs in the UI: "
          f"ETF_DATA_DIR={DATA_DIR} make dev")  # fmt: skip


if __name__ == "__main__":
    main()
