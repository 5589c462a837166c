"""A new champion is served without a restart and without a dropped request; one that cannot
be loaded leaves the old version served, and ``/health`` says so. Against the real server."""

import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow import MlflowClient

from etf_assets.constants import MODEL_ALIAS, MODEL_NAME
from serving.schema import FEATURES

from .helpers import expected_volumes
from .server import Server, request, running_server, wait_for
from .synthetic import RegisteredModel, fit_poly_model, register_model

VOL, PRICE = FEATURES
ROWS = [(2.5e6, 42.5), (1e9, 25.0), (5e5, 12.5)]
POLL_SECONDS = 1
SWITCH_TIMEOUT_S = 60.0


@dataclass
class Store:
    """A store of the module's own, whose champion the tests move."""

    folder: Path
    first: RegisteredModel
    models: dict[str, object] = field(default_factory=dict)  # version -> fitted model

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.first.tracking_uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("updates")
    first = register_model(folder)
    return Store(folder, first, {first.version: first.model})


@pytest.fixture(scope="module")
def server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "MLFLOW_TRACKING_URI": store.first.tracking_uri,
        "FLASK_MODEL_POLL_SECONDS": str(POLL_SECONDS),
    }
    log_path = tmp_path_factory.mktemp("gunicorn-updates") / "gunicorn.log"
    with running_server(env, log_path) as running:
        yield running


@dataclass
class Answers:
    """What the load threads got: (thread, kind, status, body) per request, and the errors."""

    got: list[tuple[int, str, int, dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def versions(self) -> list[str]:
        return [body.get("model_version") for _, _, _, body in self.got]

    def problems(self, models: dict[str, object]) -> list[str]:
        """Answers that are errors, or not what the model of the version they name answers."""
        found = list(self.errors)
        for _, kind, status, body in self.got:
            version = body.get("model_version")
            if status != 200 or version not in models:
                found.append(f"{kind}: {status} {body}")
                continue
            want = expected_volumes(models[version], ROWS)
            got = body["predictions"] if kind == "POST" else [body["volume"]]
            if got != (want if kind == "POST" else want[:1]):
                found.append(f"{kind} version {version}: {got} != {want}")
        return found

    def last_versions(self) -> set[str]:
        """The version of each thread's last answer."""
        last = {thread: body.get("model_version") for thread, _, _, body in self.got}
        return set(last.values())


@contextmanager
def steady_load(server: Server, threads: int = 4) -> Iterator[Answers]:
    """``threads`` clients on kept-alive connections, each sending GET and batch POST requests
    back to back until the block ends."""
    answers = Answers()
    stop = threading.Event()
    lock = threading.Lock()
    batch = json.dumps({"instances": [{VOL: v, PRICE: p} for v, p in ROWS]})
    query = f"/predict?{VOL}={ROWS[0][0]}&{PRICE}={ROWS[0][1]}"
    json_body = {"Content-Type": "application/json"}

    def run(number: int) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        while not stop.is_set():
            for kind in ("GET", "POST"):
                try:
                    if kind == "GET":
                        conn.request("GET", query)
                    else:
                        conn.request("POST", "/predict", batch, json_body)
                    response = conn.getresponse()
                    status, body = response.status, json.loads(response.read())
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    with lock:
                        answers.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
                    continue
                with lock:
                    answers.got.append((number, kind, status, body))
        conn.close()

    workers = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield answers
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)


def _health(server: Server) -> dict:
    return request(f"{server.base}/health")[1]


def test_new_champion_is_served_without_restart_or_dropped_requests(
    server: Server, store: Store
) -> None:
    before = _health(server)
    processes = server.children()
    new_model = fit_poly_model(seed=11)
    with steady_load(server) as answers:
        wait_for(lambda: len(answers.versions) > 200, 30, message="load running")
        second = register_model(store.folder, new_model)  # moves the champion alias
        store.models[second.version] = new_model
        wait_for(
            lambda: _health(server)["model_version"] == second.version,
            SWITCH_TIMEOUT_S,
            message=f"version {second.version} served",
        )
        # The other worker swaps within a follow interval: every client then gets the new one.
        wait_for(
            lambda: answers.last_versions() == {second.version},
            SWITCH_TIMEOUT_S,
            message="every client answered by the new version",
        )
        count = len(answers.got)
        wait_for(lambda: len(answers.got) > count + 200, 30, message="more load")
    print(f"{len(answers.got)} answers during the switch, {len(answers.errors)} errors")
    assert answers.problems(store.models) == []
    assert {before["model_version"], second.version} <= set(answers.versions)
    assert expected_volumes(new_model, ROWS) != expected_volumes(store.first.model, ROWS)
    # No restart: the same workers and watcher, and the new version reported with its run.
    assert server.children() == processes
    health = _health(server)
    assert health["status"] == "ok" and health["update_error"] is None
    assert health["run_id"] == second.run_id


def test_unloadable_champion_leaves_the_old_version_served(server: Server, store: Store) -> None:
    served = _health(server)["model_version"]
    client = store.client
    broken = client.create_model_version(
        MODEL_NAME, source=str(store.folder / "no-such-artifacts"), run_id=store.first.run_id
    )
    client.set_registered_model_alias(MODEL_NAME, MODEL_ALIAS, broken.version)
    try:
        health = wait_for(
            lambda: (h := _health(server))["update_error"] and h,
            SWITCH_TIMEOUT_S,
            message="/health reporting the broken version",
        )
        assert health["status"] == "degraded"
        assert health["model_version"] == served
        assert f"version {broken.version}) could not be loaded" in health["update_error"]
        assert health["update_error"].endswith(f"still serving version {served}")
        for _ in range(10):  # both workers, on new connections
            status, body = request(f"{server.base}/predict?{VOL}={ROWS[0][0]}&{PRICE}={ROWS[0][1]}")
            assert (status, body["model_version"]) == (200, served)
            assert body["volume"] == expected_volumes(store.models[served], ROWS[:1])[0]
    finally:
        client.set_registered_model_alias(MODEL_NAME, MODEL_ALIAS, served)
    health = wait_for(
        lambda: (h := _health(server))["update_error"] is None and h,
        SWITCH_TIMEOUT_S,
        message="/health back to ok",
    )
    assert (health["status"], health["model_version"]) == ("ok", served)


def test_a_watcher_that_dies_is_started_again(server: Server) -> None:
    def watchers() -> set[int]:
        return {
            pid
            for pid in server.children()
            if b"serving.watcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }

    (first,) = watchers()
    served = _health(server)["model_version"]
    os.kill(first, signal.SIGKILL)
    (second,) = wait_for(lambda: watchers() - {first}, SWITCH_TIMEOUT_S, message="new watcher")
    # It checks the registry again: /health's checked_at moves on, with the same version served.
    before = _health(server)["checked_at"]
    health = wait_for(
        lambda: (h := _health(server))["checked_at"] > before and h,
        SWITCH_TIMEOUT_S,
        message="a check by the new watcher",
    )
    assert (health["status"], health["model_version"]) == ("ok", served)
    assert watchers() == {second}
