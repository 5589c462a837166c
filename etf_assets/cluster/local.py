"""A Dask scheduler and workers on this machine, as separate processes of this venv: what
`make cluster` starts for a user to try `ETF_DASK_SCHEDULER`, and what the tests run on.

`python -m etf_assets.cluster.local [--workers N] [--port P] [--directory D]` runs until
interrupted and prints the address to export.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
START_SECONDS = 60.0


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _dask_command() -> list[str]:
    # The venv's own `dask`, whichever interpreter runs this: workers import etf_assets from it.
    return [str(Path(sys.executable).with_name("dask"))]


@dataclass
class LocalCluster:
    """A scheduler and workers started by `start`; `stop` ends every process it started."""

    address: str
    directory: Path
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def add_worker(self) -> subprocess.Popen:
        """Start one more worker (one thread, no nanny: killing its pid kills the worker)."""
        number = len(self.workers) + 1
        log = open(self.directory / f"worker-{number}.log", "ab")  # noqa: SIM115 (the child owns it)
        worker = subprocess.Popen(
            [
                *_dask_command(),
                "worker",
                self.address,
                "--host",
                HOST,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"worker-{number}",
                "--local-directory",
                str(self.directory / f"worker-{number}"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = START_SECONDS) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        """Stop the workers, then the scheduler (stopped together, a worker can hang on its
        broken connection), each by its pid; kill what does not end within 10 s."""
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 10
            for process in group:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start(directory: Path, workers: int = 2, port: int = 0) -> LocalCluster:
    """Start a scheduler on 127.0.0.1 (`port`, or a free one) and `workers` workers, their files
    under `directory`; return once every worker has joined."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = open(directory / "scheduler.log", "ab")  # noqa: SIM115 (the child owns it)
    scheduler = subprocess.Popen(
        [*_dask_command(), "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    cluster = LocalCluster(f"tcp://{HOST}:{port}", directory, scheduler)
    try:
        for _ in range(workers):
            cluster.add_worker()
        cluster.wait_for_workers(workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8786)
    parser.add_argument("--directory", type=Path, default=None)
    args = parser.parse_args(argv)
    directory = args.directory or Path(tempfile.mkdtemp(prefix="etf-dask-"))
    # SIGTERM as Ctrl-C, so that either one, even during the start, stops the processes started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster = start(directory, args.workers, args.port)
    except KeyboardInterrupt:
        return
    pids = ", ".join(str(p.pid) for p in cluster.workers)
    print(
        f"Dask scheduler at {cluster.address} (pid {cluster.scheduler.pid}), "
        f"{args.workers} workers (pids {pids}); logs in {directory}.\n"
        f"In another shell: export ETF_DASK_SCHEDULER={cluster.address}; make run\n"
        "Ctrl-C stops them.",
        flush=True,
    )
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
