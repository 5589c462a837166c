"""Helpers for the browser test: a `dagster dev` process group, GraphQL polling, a time budget."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from etf_assets_tests.conftest import REPO, write_instance_config

ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path(os.environ.get("ETF_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


class Deadline:
    """A time budget shared by every wait of a test, so the whole test stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.end = self.start + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def cap(self, seconds: float) -> float:
        """`seconds`, or less if the budget runs out first (at least one second)."""
        return max(1.0, min(seconds, self.remaining()))

    def ms(self, seconds: float) -> float:
        """`cap(seconds)` in milliseconds, for Playwright timeouts."""
        return self.cap(seconds) * 1000

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dagster_executable() -> str:
    beside = Path(sys.executable).parent / "dagster"
    return str(beside) if beside.exists() else (shutil.which("dagster") or "dagster")


def poll(probe: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Call `probe` until it returns something truthy; raise TimeoutError after `timeout` s.

    `probe` may raise to stop early (a failed run should not wait for the timeout).
    """
    end = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class DagsterDev:
    """`dagster dev` in its own session, on a fresh instance and data folder.

    `dagster dev` ignores SIGTERM when it has no terminal, and its children (webserver, daemon,
    code server, run workers) share its process group: `stop` kills the whole group with SIGKILL.
    """

    def __init__(self, root: Path, pg_url: str, port: int | None = None) -> None:
        self.root = root
        self.pg_url = pg_url
        self.data_dir = root / "data"
        self.home = root / "dagster_home"
        self.log_path = root / "dagster-dev.log"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")
        }
        env.update(
            ETF_DATA_DIR=str(self.data_dir),
            ETF_SOURCE="sample",
            DAGSTER_HOME=str(self.home),
            DAGSTER_PG_URL=self.pg_url,
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True)
        write_instance_config(self.home)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    dagster_executable(),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                cwd=REPO,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_ready(self, timeout: float) -> None:
        """Wait for the webserver to answer and the `etf_assets` code location to load."""

        def server_answers() -> bool:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        def location_loaded() -> bool:
            self.check_alive()
            data = self.graphql(
                """{ workspaceOrError { ... on Workspace { locationEntries {
                     name loadStatus
                     locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
            )
            entries = data["workspaceOrError"].get("locationEntries") or []
            for entry in entries:
                error = entry["locationOrLoadError"]
                if error and error["__typename"] == "PythonError":
                    raise RuntimeError(f"code location {entry['name']} failed: {error['message']}")
            return any(
                e["name"] == "etf_assets"
                and e["loadStatus"] == "LOADED"
                and e["locationOrLoadError"]
                for e in entries
            )

        start = time.monotonic()
        poll(server_answers, timeout, f"{self.url}/server_info", interval=0.5)
        poll(
            location_loaded,
            max(1.0, timeout - (time.monotonic() - start)),
            "the etf_assets code location to load",
            interval=0.5,
        )

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
            {"id": run_id},
        )
        return data["runOrError"].get("status", data["runOrError"]["__typename"])

    def backfill_status(self, backfill_id: str) -> str:
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status } } }""",
            {"id": backfill_id},
        )
        result = data["partitionBackfillOrError"]
        return result.get("status", result["__typename"])

    def wait_run_success(self, run_id: str, timeout: float) -> None:
        def done() -> bool:
            self.check_alive()
            status = self.run_status(run_id)
            if status in ("FAILURE", "CANCELED", "CANCELING", "RunNotFoundError"):
                raise AssertionError(f"run {run_id} ended {status}:\n{self.log_tail()}")
            return status == "SUCCESS"

        poll(done, timeout, f"run {run_id} to succeed")

    def wait_backfill_success(self, backfill_id: str, timeout: float) -> None:
        def done() -> bool:
            self.check_alive()
            status = self.backfill_status(backfill_id)
            if status in (
                "FAILED",
                "CANCELED",
                "CANCELING",
                "COMPLETED_FAILED",
                "FAILING",
                "BackfillNotFoundError",
            ):
                raise AssertionError(f"backfill {backfill_id} is {status}:\n{self.log_tail()}")
            return status == "COMPLETED_SUCCESS"

        poll(done, timeout, f"backfill {backfill_id} to succeed", interval=2.0)

    def stop(self) -> list[int]:
        """Kill the process group, reap the leader; return the pids that had to be swept."""
        if self.process is None:
            return []
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5)
        leftovers = list(processes_with_env("DAGSTER_HOME", str(self.home)))
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leftovers


def processes_with_env(name: str, value: str) -> Iterator[int]:
    """Pids of live (not zombie) processes whose environment has `name=value`."""
    wanted = f"{name}={value}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if wanted in environ:
            yield int(entry.name)
