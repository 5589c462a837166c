"""The real server for tests: gunicorn started as ``make serve`` starts it (the same
``serving/gunicorn_conf.py``), on 127.0.0.1 and a port the OS picks, queried over HTTP."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "serving" / "gunicorn_conf.py"
START_TIMEOUT_S = 120.0
_LISTENING = re.compile(r"Listening at: http://(127\.0\.0\.1):(\d+)")
STOP_TIMEOUT_S = 20.0


def serve_command(bind: str = "127.0.0.1:0") -> list[str]:
    """``make serve``'s command line, binding ``bind`` instead of port 8000."""
    return [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), "--bind", bind]


@dataclass(frozen=True)
class Server:
    """A running gunicorn."""

    base: str
    host: str
    port: int
    pid: int
    log_path: Path

    def children(self) -> set[int]:
        """The pids of the master's children (workers and model watcher) now."""
        return children_of(self.pid)


@contextmanager
def running_server(
    env: Mapping[str, str], log_path: Path, command: Sequence[str] | None = None
) -> Iterator[Server]:
    """Start ``command`` (default :func:`serve_command`) with ``env`` added to the environment;
    yield once ``/health`` answers; stop it (its whole process group) afterwards."""
    full_env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **env,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command or serve_command()),
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        yield _wait_until_ready(process, log_path)
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen, log_path: Path) -> Server:
    deadline = time.monotonic() + START_TIMEOUT_S
    found = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text()
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log}")
        found = found or _LISTENING.search(log_path.read_text())
        if found:
            host, port = found.group(1), int(found.group(2))
            base = f"http://{host}:{port}"
            try:
                status, _ = request(f"{base}/health", timeout=5)
            except OSError:
                status = None
            if status in (200, 503):
                return Server(base, host, port, process.pid, log_path)
        time.sleep(0.25)
    raise RuntimeError(f"gunicorn not ready after {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown; it stops its watcher
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


def request(url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """GET ``url``, or POST ``body`` as JSON; the status and the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def children_of(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def wait_for(
    condition: Callable[[], Any], timeout: float, interval: float = 0.2, message: str = ""
) -> Any:
    """Call ``condition`` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message or 'condition'} not met within {timeout} s (last: {last!r})")
