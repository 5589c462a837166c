"""The real server: gunicorn as `make serve` runs it, on a free loopback port, queried over HTTP."""

import re
from pathlib import Path

from serving.schema import FEATURES

from .helpers import expected_volumes
from .server import REPO, Server, children_of, request
from .synthetic import RegisteredModel

VOL, PRICE = FEATURES


def test_make_serve_starts_gunicorn_from_the_shared_config() -> None:
    """The tests start the server from serving/gunicorn_conf.py: so must `make serve`, and with
    nothing but the address on top."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^serve:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no serve target in the Makefile"
    command = recipe.group(1)
    assert "gunicorn --config serving/gunicorn_conf.py" in command
    options = set(re.findall(r"(?<!\S)(--?[\w-]+)", command))
    assert options <= {"--config", "--bind"}, f"options outside gunicorn_conf.py: {options}"


def test_gunicorn_serves_health_and_predictions(
    gunicorn_server: Server, registered: RegisteredModel
) -> None:
    server = gunicorn_server.base
    status, health = request(f"{server}/health")
    assert status == 200
    assert (health["model_version"], health["run_id"]) == (registered.version, registered.run_id)

    status, body = request(f"{server}/predict?{VOL}=12345&{PRICE}=25")
    assert status == 200
    assert body["volume"] == expected_volumes(registered.model, [(12345, 25)])[0]

    rows = [(1e9, 25.0), (5e5, 12.5), (0.0, 0.0)]
    status, body = request(
        f"{server}/predict", {"instances": [{VOL: v, PRICE: p} for v, p in rows]}
    )
    assert status == 200
    assert body["predictions"] == expected_volumes(registered.model, rows)


def test_gunicorn_answers_errors_in_json(gunicorn_server: Server) -> None:
    server = gunicorn_server.base
    status, body = request(f"{server}/predict?{VOL}=abc&{PRICE}=25")
    assert (status, body) == (400, {"error": "vol_moving_avg: not a number: 'abc'"})
    status, body = request(f"{server}/predict", {"instances": []})
    assert status == 400 and "instances" in body["error"]
    status, body = request(f"{server}/nope")
    assert status == 404 and body["error"] == "no such path: /nope"


def test_workers_hold_no_mlflow_and_the_watcher_runs_beside_them(gunicorn_server: Server) -> None:
    """The workers answer without MLflow, scikit-learn or pandas; the watcher is the one
    process that loads models. Seen from outside: the compiled libraries each process mapped
    (MLflow brings protobuf, pyarrow, pandas and scipy with it)."""
    commands = {}
    for pid in children_of(gunicorn_server.pid):
        commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    watchers = [pid for pid, command in commands.items() if "serving.watcher" in command]
    workers = [pid for pid in commands if pid not in watchers]
    assert len(watchers) == 1 and len(workers) == 2, commands
    heavy = ("/google/", "/pyarrow/", "/pandas/", "/scipy/", "/sklearn/", "/duckdb/")

    def mapped(pid: int) -> set[str]:
        maps = Path(f"/proc/{pid}/maps").read_text()
        return {package.strip("/") for package in heavy if package in maps}

    assert mapped(watchers[0]) >= {"google", "pandas", "sklearn"}  # the check can see them
    for pid in workers:
        assert mapped(pid) == set(), f"worker {pid}"
