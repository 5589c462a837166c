"""The model watcher: the one process of ``make serve`` that talks to MLflow.

``python -m serving.watcher --state FILE`` checks the registry every ``MODEL_POLL_SECONDS``
(``FLASK_MODEL_POLL_SECONDS``, 5 s by default). When ``MODEL_URI`` (``models:/etf_volume_model@
champion``) names another version than the one served, it loads that version and writes it to
the state file (:mod:`serving.state_file`), which every worker follows and swaps in between two
requests: no restart, no request dropped. If the new version cannot be loaded, the state keeps
the old one, with the reason, which ``/health`` reports; the load is tried again at each check.

Loading needs MLflow, scikit-learn and pandas; answering needs the predictor's parameters. Kept
in this process, they stay out of the workers, which are forked from a master that never imports
them either. :class:`WatcherProcess` runs the watcher beside gunicorn's master (see
``serving/gunicorn_conf.py``); this module imports only the standard library until
:func:`main` runs.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("serving.watcher")

#: Seconds the master waits for the first state before it starts the workers anyway (they
#: answer 503 "still being loaded" until the state comes).
FIRST_LOAD_TIMEOUT_S = 120.0
#: Seconds before a watcher that exited is started again.
RESTART_DELAY_S = 5.0


class Watcher:
    """Checks the registry and writes the state file; :meth:`check` is one round."""

    def __init__(
        self,
        state_path: Path,
        model_uri: str,
        tracking_uri: str,
        poll_seconds: float,
        features: tuple[str, ...],
    ) -> None:
        self.state_path = state_path
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.poll_seconds = poll_seconds
        self.features = features
        self.served: Any = None  # LoadedModel
        self._client: Any = None
        self._failed: tuple[Any, ...] | None = None  # what failed at the last check, if anything

    def check(self) -> None:
        """Resolve the model URI; load it if it names another version; write the state."""
        from serving.model_store import NoServableModel, load_resolved, resolve_model
        from serving.state_file import State, write_state

        checked_at = datetime.now(UTC)
        error = None
        try:
            resolved = resolve_model(self.model_uri, self.tracking_uri, self._mlflow_client)
            served = self.served
            if served is None or resolved.identity != (served.version, served.run_id):
                what = f"{self.model_uri} (version {resolved.version})"
                try:
                    loaded = load_resolved(resolved, self.tracking_uri, self.features)
                except NoServableModel as exc:
                    error = f"{what} cannot be served: {exc}"
                    raise
                except Exception:
                    error = f"{what} could not be loaded (see the server log)"
                    self._log_failure(resolved.identity, f"Loading {what} failed")
                    raise
                was = f" (was version {served.version})" if served is not None else ""
                log.info("Loaded %s with the %s predictor%s", what, loaded.predictor.kind, was)
                self.served, self._failed = loaded, None
        except NoServableModel as exc:
            error = error or str(exc)
        except Exception as exc:
            if error is None:
                self._log_failure(("check", type(exc)), f"Checking {self.model_uri} failed")
                error = (
                    f"the registry could not be checked for {self.model_uri} (see the server log)"
                )
        if error is None:
            self._failed = None
        write_state(
            self.state_path,
            State(
                model_uri=self.model_uri,
                checked_at=checked_at,
                poll_seconds=self.poll_seconds,
                model=self.served,
                unavailable=error if self.served is None else None,
                update_error=error if self.served is not None else None,
            ),
        )

    def _mlflow_client(self) -> Any:
        # Made once the store exists (resolve_model checks that first), kept for the watcher's
        # life: each check is then one registry query.
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def run(self, keep_going: threading.Event) -> None:
        """:meth:`check` every ``poll_seconds`` until ``keep_going`` is cleared."""
        while keep_going.is_set():
            started = time.monotonic()
            try:
                self.check()
            except Exception:  # writing the state failed: the next round may succeed
                log.exception("Writing %s failed", self.state_path)
            rest = self.poll_seconds - (time.monotonic() - started)
            deadline = time.monotonic() + max(rest, 0.0)
            while keep_going.is_set() and time.monotonic() < deadline:
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))

    def _log_failure(self, identity: tuple[Any, ...], message: str) -> None:
        # The traceback once per version; the retries of the same version in one line.
        if identity != self._failed:
            log.exception(message)
            self._failed = identity
        else:
            log.warning("%s again", message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the watcher until it is signalled or its parent (gunicorn's master) is gone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the state file to write")
    parser.add_argument("--parent", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S %z",
    )
    # A progress bar per download would fill the server log at each new version.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    keep_going = threading.Event()
    keep_going.set()

    def stop(signum: int, frame: Any) -> None:
        # At once, even in the middle of a load: the state file is only ever replaced whole.
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    if args.parent:
        # Ctrl-C on `make serve` reaches the whole process group: the master stops the watcher
        # itself (on_exit), after its workers; a watcher quitting first would be started again.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=_exit_with, args=(args.parent, keep_going), daemon=True).start()

    from flask import Config

    from etf_assets.locations import tracking_uri_from_env
    from serving.app import configure
    from serving.schema import FEATURES

    config = Config(os.getcwd())
    configure(config)
    tracking_uri = config["MLFLOW_TRACKING_URI"] or tracking_uri_from_env()
    poll_seconds = float(config["MODEL_POLL_SECONDS"])
    log.info(
        "Model watcher: %s in %s, checked every %g s",
        config["MODEL_URI"],
        tracking_uri,
        poll_seconds,
    )
    watcher = Watcher(args.state, config["MODEL_URI"], tracking_uri, poll_seconds, FEATURES)
    watcher.run(keep_going)
    return 0


def _exit_with(parent: int, keep_going: threading.Event) -> None:
    while keep_going.is_set():
        if os.getppid() != parent:
            log.info("gunicorn's master is gone: stopping")
            keep_going.clear()
        time.sleep(1.0)


class WatcherProcess:
    """The watcher as a child of gunicorn's master, started again whenever it exits.

    The child is a new interpreter (``python -m serving.watcher``), not a fork: the master
    stays free of what the watcher imports, and so do the workers it forks.
    """

    def __init__(self, logger: Any = log) -> None:
        self.log = logger
        self.folder = Path(tempfile.mkdtemp(prefix="etf-serving-"))
        self.state_path = self.folder / "state.json"
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="model-watcher", daemon=True)

    def start(self, first_load_timeout: float = FIRST_LOAD_TIMEOUT_S) -> None:
        """Start the watcher; return once it wrote its first state, or after the timeout."""
        self._thread.start()
        deadline = time.monotonic() + first_load_timeout
        while not self.state_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.state_path.exists():
            self.log.warning("No model state after %g s: starting the workers", first_load_timeout)

    def stop(self) -> None:
        """Stop the watcher and remove its folder."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join(timeout=5)
        for path in self.folder.iterdir():
            path.unlink(missing_ok=True)
        self.folder.rmdir()

    def _supervise(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [package_root, os.environ.get("PYTHONPATH")])
            ),
        }
        command = [
            sys.executable, "-m", "serving.watcher",
            "--state", str(self.state_path), "--parent", str(os.getpid()),
        ]  # fmt: skip
        while not self._stopping.is_set():
            self._process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
            self.log.info("Model watcher started (pid: %s)", self._process.pid)
            code = self._process.wait()  # gunicorn may reap it first: then the code reads 0
            if self._stopping.is_set():
                break
            self.log.warning(
                "Model watcher exited (code %s); starting it again in %g s", code, RESTART_DELAY_S
            )
            self._stopping.wait(RESTART_DELAY_S)


if __name__ == "__main__":
    sys.exit(main())
