"""Serving benchmark: ``GET /predict`` next to a bare Flask endpoint, and a 10,000-instance batch.

Both apps run as ``make serve`` runs the real one: ``gunicorn --config serving/gunicorn_conf.py``
(its gevent workers, limits and model watcher; the bare app is named on the command line) on
127.0.0.1, at the same time, and are loaded in alternating rounds by the same load generator:
``wrk`` when it is installed (``apt-get install wrk``), else a Python generator (its own CPU
use competes with the servers more than wrk's; the ratio stays like for like). Each run also
records the servers' CPU time per request, which other load on the machine skews far less
than requests per second; after the rounds, the resident memory of each worker (and of the model
watcher, the one process that loads models). The model is the
registered ``etf_volume_model@champion`` of the configured MLflow store when there is one, else
a synthetic model of the same shape in a temporary store.

Run: ``python -m benchmarks.bench_serving [--duration 8 --rounds 3 --connections 32]``.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUNICORN_CONF = REPO / "serving" / "gunicorn_conf.py"
QUERY = "/predict?vol_moving_avg=12345&adj_close_rolling_med=25"
BATCH_SIZE = 10_000
TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
TARGET_BATCH_MS = 50.0
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LoadResult:
    """One load run against one URL."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None = None  # CPU time of the server's processes during the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float | None:
        """Server CPU microseconds per request: unlike req/s, not skewed by other load."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.requests * 1e6


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its base URL and the master's pid."""

    base: str
    pid: int


@dataclass(frozen=True)
class Memory:
    """Resident memory of a server's processes, in MB."""

    workers: list[float]
    watcher: float | None


# --- servers ------------------------------------------------------------------------------


@contextmanager
def gunicorn(
    app_spec: str, ready_path: str, env: dict[str, str], log_dir: Path
) -> Iterator[Server]:
    """Run ``app_spec`` as ``make serve`` runs the app, on a free loopback port; yield it; stop
    it (its whole process group: master, workers and model watcher)."""
    log_path = log_dir / (re.sub(r"\W+", "_", app_spec) + ".log")
    command = [
        sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF),
        "--bind", "127.0.0.1:0", app_spec,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        yield Server(_wait_ready(process, log_path, ready_path), process.pid)
    finally:
        process.send_signal(signal.SIGINT)  # quick shutdown; gunicorn stops its watcher
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _wait_ready(process: subprocess.Popen, log_path: Path, ready_path: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    base = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()}")
        if base is None:
            found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log_path.read_text())
            base = found.group(1) if found else None
        if base is not None:
            try:
                with urllib.request.urlopen(base + ready_path, timeout=5) as response:
                    if response.status == 200:
                        return base
            except OSError:
                pass
        time.sleep(0.25)
    raise RuntimeError(f"gunicorn not ready after {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and its children (Linux /proc), or None."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1] is the ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
            found = True
    return total / ticks if found else None


def server_memory(pid: int) -> Memory:
    """Resident memory (VmRSS) of the workers and of the model watcher of master ``pid``."""
    workers, watcher = [], None
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            command = (status.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() != str(pid) or "VmRSS" not in fields:
            continue
        rss_mb = int(fields["VmRSS"].split()[0]) / 1024
        if b"serving.watcher" in command:
            watcher = rss_mb
        else:
            workers.append(rss_mb)
    return Memory(sorted(workers), watcher)


def measure(load, server: Server, connections: int, seconds: float) -> LoadResult:
    """One load run on ``server``'s ``GET /predict``, with the server's CPU time."""
    before = server_cpu_seconds(server.pid)
    result = load(server.base + QUERY, connections, seconds)
    after = server_cpu_seconds(server.pid)
    cpu = None if before is None or after is None else after - before
    return replace(result, server_cpu_s=cpu)


def model_store(synthetic: bool, tmp: Path) -> tuple[str, str]:
    """The tracking URI to serve from and a description of the model in it."""
    from etf_assets.locations import tracking_uri_from_env
    from serving.app import DEFAULTS
    from serving.model_store import LoadedModel, try_load_model
    from serving.schema import FEATURES

    if not synthetic:
        uri, model_uri = tracking_uri_from_env(), DEFAULTS["MODEL_URI"]
        loaded = try_load_model(model_uri, uri, FEATURES)
        if isinstance(loaded, LoadedModel):
            return uri, f"{model_uri} version {loaded.version} in {uri} ({loaded.predictor.kind})"
        print(f"No model in {uri} ({loaded.reason}): serving a synthetic one.")
    from serving.tests.synthetic import register_model

    registered = register_model(tmp / "mlflow")
    return registered.tracking_uri, f"synthetic asset-shaped model in {tmp / 'mlflow'}"


# --- load generators ----------------------------------------------------------------------


def run_wrk(url: str, connections: int, seconds: float) -> LoadResult:
    """``wrk -t2 -c<connections> -d<seconds>s --latency <url>``, parsed."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    requests, elapsed, unit = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out).groups()
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return LoadResult(
        requests=int(requests),
        seconds=_to_ms(elapsed, unit) / 1000,
        errors=errors,
        p50_ms=_percentile(out, "50"),
        p99_ms=_percentile(out, "99"),
    )


def _percentile(out: str, which: str) -> float:
    value, unit = re.search(rf"^\s+{which}%\s+([\d.]+)(\w+)", out, re.MULTILINE).groups()
    return _to_ms(value, unit)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _python_client(host: str, port: int, path: str, threads: int, seconds: float):
    """One load process: ``threads`` connections, one request each at a time, until time's up."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                with socket.create_connection((host, port), timeout=10) as conn:
                    conn.sendall(request)
                    chunks = []
                    while chunk := conn.recv(65536):
                        chunks.append(chunk)
                ok = b"".join(chunks)[9:12] == b"200"
            except OSError:
                ok = False
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors[0] += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, errors[0]


def run_python_load(url: str, connections: int, seconds: float) -> LoadResult:
    """The fallback generator: 2 processes sharing ``connections`` threads."""
    host_port, path = url.removeprefix("http://").split("/", 1)
    host, port = host_port.split(":")
    processes = 2
    args = [
        (host, int(port), "/" + path, connections // processes, seconds) for _ in range(processes)
    ]
    # fork, not spawn: spawn would re-import the caller's __main__ (``python -m benchmarks``).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(processes) as pool:
        results = pool.starmap(_python_client, args)
    latencies = sorted(v for lat, _ in results for v in lat)
    quantiles = statistics.quantiles(latencies, n=100)
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        errors=sum(err for _, err in results),
        p50_ms=quantiles[49] * 1e3,
        p99_ms=quantiles[98] * 1e3,
    )


# --- batch ---------------------------------------------------------------------------------


def measure_batch(base: str, repeats: int) -> list[float]:
    """Milliseconds per ``POST /predict`` of 10,000 instances, request sent to body read."""
    import numpy as np

    rng = np.random.default_rng(0)
    instances = [
        {"vol_moving_avg": float(v), "adj_close_rolling_med": float(p)}
        for v, p in zip(
            10.0 ** rng.uniform(3, 9, BATCH_SIZE),
            10.0 ** rng.uniform(0, 3, BATCH_SIZE),
            strict=True,
        )
    ]
    body = json.dumps({"instances": instances}).encode()
    host, port = base.removeprefix("http://").split(":")
    timings = []
    for attempt in range(repeats + 3):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        start = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - start) * 1e3
        conn.close()
        if response.status != 200 or len(json.loads(payload)["predictions"]) != BATCH_SIZE:
            raise RuntimeError(f"batch failed: {response.status} {payload[:200]!r}")
        if attempt >= 3:  # the first requests warm up both workers
            timings.append(elapsed)
    return timings


# --- report --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def _cpu_row(bare: list[LoadResult], predict: list[LoadResult]) -> list[tuple[str, ...]]:
    if any(r.cpu_us is None for r in bare + predict):
        return []
    bare_cpu = statistics.median(r.cpu_us for r in bare)
    predict_cpu = statistics.median(r.cpu_us for r in predict)
    note = f"bare/predict {bare_cpu / predict_cpu:.2f} (CPU-bound throughput ratio)"
    return [("server CPU us/request", f"{bare_cpu:.0f}", f"{predict_cpu:.0f}", note)]


def _memory_line(name: str, memory: Memory) -> str:
    workers = ", ".join(f"{mb:.0f}" for mb in memory.workers)
    watcher = "" if memory.watcher is None else f"; model watcher {memory.watcher:.0f} MB"
    return f"  {name}: workers {workers} MB{watcher}"


def report(
    bare: list[LoadResult],
    predict: list[LoadResult],
    batch_ms: list[float],
    header: str,
    memory: dict[str, Memory] | None = None,
) -> bool:
    """Print the figures side by side; return whether every target is met."""
    bare_rate = statistics.median(r.rate for r in bare)
    predict_rate = statistics.median(r.rate for r in predict)
    # Each round runs bare then predict back to back: the paired ratio cancels slow drift in
    # what else the machine is doing.
    ratios = [p.rate / b.rate for b, p in zip(bare, predict, strict=True)]
    ratio = statistics.median(ratios)
    p99 = statistics.median(r.p99_ms for r in predict)
    errors = sum(r.errors for r in predict)
    batch_median = statistics.median(batch_ms)
    checks = {
        "ratio": ratio >= TARGET_RATIO,
        "p99": p99 < TARGET_P99_MS,
        "errors": errors == 0,
        "batch": batch_median < TARGET_BATCH_MS,
    }
    rows = [
        ("requests/s", f"{bare_rate:,.0f}", f"{predict_rate:,.0f}",
         f"ratio {ratio:.2f} (target >= {TARGET_RATIO}) {_verdict(checks['ratio'])}"),
        *_cpu_row(bare, predict),
        ("latency p50 ms", f"{statistics.median(r.p50_ms for r in bare):.2f}",
         f"{statistics.median(r.p50_ms for r in predict):.2f}", ""),
        ("latency p99 ms", f"{statistics.median(r.p99_ms for r in bare):.2f}", f"{p99:.2f}",
         f"target < {TARGET_P99_MS:g} ms {_verdict(checks['p99'])}"),
        ("errors (all rounds)", f"{sum(r.errors for r in bare)}", f"{errors}",
         f"target 0 {_verdict(checks['errors'])}"),
        ("requests (all rounds)", f"{sum(r.requests for r in bare):,}",
         f"{sum(r.requests for r in predict):,}", ""),
    ]  # fmt: skip
    print(header)
    print(f"{'median of rounds':24}{'bare Flask':>14}{'GET /predict':>14}")
    for label, left, right, note in rows:
        print(f"{label:24}{left:>14}{right:>14}   {note}")
    for number, (b, p, r) in enumerate(zip(bare, predict, ratios, strict=True), start=1):
        print(
            f"  round {number}: {b.rate:8,.0f} req/s p99 {b.p99_ms:6.2f} ms | "
            f"{p.rate:8,.0f} req/s p99 {p.p99_ms:6.2f} ms | ratio {r:.2f}"
        )
    print(
        f"POST /predict with {BATCH_SIZE:,} instances: median {batch_median:.1f} ms, "
        f"min {min(batch_ms):.1f} ms, max {max(batch_ms):.1f} ms over {len(batch_ms)} requests "
        f"(target < {TARGET_BATCH_MS:g} ms) {_verdict(checks['batch'])}"
    )
    if memory:
        print("Resident memory (VmRSS) after the load:")
        for name, used in memory.items():
            print(_memory_line(name, used))
    return all(checks.values())


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-repeats", type=int, default=20)
    parser.add_argument("--synthetic", action="store_true", help="serve a synthetic model")
    parser.add_argument("--python-load", action="store_true", help="do not use wrk")
    return parser.parse_args(list(argv) if argv is not None else [])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; 0 when every target is met, else 1.

    Args:
        argv: Command-line options (see ``--help``); None runs with the defaults.
    """
    args = _parse(argv)
    load_before = os.getloadavg()[0]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    load = run_wrk if use_wrk else run_python_load
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_serving_")))
        tracking_uri, model = model_store(args.synthetic, tmp)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        bare_server = stack.enter_context(
            gunicorn("benchmarks.bare_app:create_app()", QUERY, env, tmp)
        )
        serve_server = stack.enter_context(gunicorn("serving:create_app()", "/health", env, tmp))
        for server in (bare_server, serve_server):  # warm-up: page in both workers of each
            load(server.base + QUERY, args.connections, 2.0)
        bare, predict = [], []
        for _ in range(args.rounds):
            bare.append(measure(load, bare_server, args.connections, args.duration))
            predict.append(measure(load, serve_server, args.connections, args.duration))
        batch_ms = measure_batch(serve_server.base, args.batch_repeats)
        memory = {
            "bare Flask": server_memory(bare_server.pid),
            "GET /predict": server_memory(serve_server.pid),
        }
    generator = (
        f"wrk -t2 -c{args.connections} -d{args.duration:g}s --latency"
        if use_wrk
        else f"Python load generator, 2 processes x {args.connections // 2} connections"
    )
    header = (
        f"Serving benchmark: gunicorn --config serving/gunicorn_conf.py ({_workers()}) on "
        f"127.0.0.1, {os.cpu_count()} CPUs; "
        f"{generator}; {args.rounds} alternating rounds; load average (1 min) "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
        f"GET {QUERY}\nmodel: {model}"
    )
    return 0 if report(bare, predict, batch_ms, header, memory) else 1


def _workers() -> str:
    from serving import gunicorn_conf

    kind = gunicorn_conf.worker_class.rsplit(".", 1)[-1]
    return f"{gunicorn_conf.workers} x {kind}, {gunicorn_conf.worker_connections} connections each"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
