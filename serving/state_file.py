"""The state file: how the model watcher hands the served model to the workers.

The watcher (:mod:`serving.watcher`, the one process of ``make serve`` that imports MLflow)
writes it after every check of the registry; each worker reads it when the app is created and
again whenever it changes (:func:`follow`), and swaps in a new model between two requests. A
worker needs only the predictor's parameters: for the closed form, a dozen floats in the JSON;
for any other model, the fitted model itself, pickled beside the file.

The file is replaced atomically (written aside, then renamed over), so that a reader sees the
old state or the new one, never half of one.
"""

import json
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask

from serving.model_store import (
    EXTENSION_KEY,
    UPDATES_KEY,
    LoadedModel,
    ModelUnavailable,
    UpdateStatus,
)
from serving.predictor import PipelinePredictor, Predictor, QuadraticPredictor

log = logging.getLogger(__name__)

FORMAT = 1

#: How often a worker looks at the state file (one ``stat`` call).
FOLLOW_SECONDS = 1.0


@dataclass(frozen=True)
class State:
    """One check of the registry by the watcher."""

    model_uri: str
    checked_at: datetime
    poll_seconds: float
    #: The model served: the last one loaded, kept while newer versions fail to load.
    model: LoadedModel | None
    #: Why there is no model (when ``model`` is None).
    unavailable: str | None = None
    #: What went wrong at this check while ``model`` is still served; None when all is well.
    update_error: str | None = None


def write_state(path: Path, state: State) -> None:
    """Write ``state`` to ``path`` atomically (the watcher's side)."""
    model = None
    if state.model is not None:
        model = {
            "name": state.model.name,
            "version": state.model.version,
            "run_id": state.model.run_id,
            "loaded_at": state.model.loaded_at.isoformat(),
            "predictor": _predictor_entry(state.model, path.parent),
        }
    document = {
        "format": FORMAT,
        "model_uri": state.model_uri,
        "checked_at": state.checked_at.isoformat(),
        "poll_seconds": state.poll_seconds,
        "model": model,
        "unavailable": state.unavailable,
        "update_error": state.update_error,
    }
    _replace(path, json.dumps(document, indent=1).encode())
    _remove_unused_pickles(path.parent, model)


def read_state(path: Path) -> dict[str, Any]:
    """The state file at ``path`` as JSON data (a worker's side).

    Raises:
        OSError, ValueError: the file is missing, unreadable or of another format.
    """
    document = json.loads(path.read_bytes())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: state format {document.get('format')!r}, expected {FORMAT}")
    return document


def follow(app: Flask, path: Path) -> None:
    """Serve the model of the state file at ``path`` in ``app``, now and whenever it changes.

    The first read happens here; later ones in a daemon thread (a greenlet under gevent
    workers) that looks at the file every :data:`FOLLOW_SECONDS`.
    """
    follower = _Follower(app, Path(path))
    follower.poll()
    threading.Thread(target=follower.run, name="etf-serving-state", daemon=True).start()


class _Follower:
    def __init__(self, app: Flask, path: Path) -> None:
        self.app = app
        self.path = path
        self.seen: tuple[int, int, int] | None = None
        self.started_at = datetime.now(UTC)

    def run(self) -> None:
        while True:
            time.sleep(FOLLOW_SECONDS)
            try:
                self.poll()
            except Exception:  # keep following: the next write of the file may be readable
                log.exception("Could not apply the model state file %s", self.path)

    def poll(self) -> None:
        """Apply the state file if it changed since the last call."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self.seen is None and EXTENSION_KEY not in self.app.extensions:
                uri = self.app.config["MODEL_URI"]
                reason = f"{uri} is still being loaded; try again in a few seconds"
                self.app.extensions[EXTENSION_KEY] = ModelUnavailable(uri, reason)
                self.app.extensions[UPDATES_KEY] = UpdateStatus(self.started_at)
            return
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key != self.seen:
            self._apply(read_state(self.path))
            self.seen = key

    def _apply(self, state: dict[str, Any]) -> None:
        extensions = self.app.extensions
        current = extensions.get(EXTENSION_KEY)
        entry = state["model"]
        if entry is None:
            extensions[EXTENSION_KEY] = ModelUnavailable(state["model_uri"], state["unavailable"])
        elif not (isinstance(current, LoadedModel) and _identity(current) == _identity(entry)):
            loaded = LoadedModel(
                uri=state["model_uri"],
                name=entry["name"],
                version=entry["version"],
                run_id=entry["run_id"],
                loaded_at=datetime.fromisoformat(entry["loaded_at"]),
                predictor=_build(entry["predictor"], self.path.parent),
            )
            extensions[EXTENSION_KEY] = loaded
            was = f" (was version {current.version})" if isinstance(current, LoadedModel) else ""
            log.info(
                "Serving %s version %s (run %s) with the %s predictor%s",
                loaded.uri,
                loaded.version,
                loaded.run_id,
                loaded.predictor.kind,
                was,
            )
        extensions[UPDATES_KEY] = UpdateStatus(
            checked_at=datetime.fromisoformat(state["checked_at"]),
            error=state["update_error"],
            poll_seconds=float(state["poll_seconds"]),
        )


def _identity(model: LoadedModel | dict[str, Any]) -> tuple[Any, ...]:
    # Not loaded_at: a watcher started again loads the same version anew, which changes nothing.
    if isinstance(model, LoadedModel):
        return model.version, model.run_id
    return model["version"], model["run_id"]


def _predictor_entry(model: LoadedModel, folder: Path) -> dict[str, Any]:
    predictor = model.predictor
    if isinstance(predictor, QuadraticPredictor):
        return {"kind": predictor.kind, "parameters": predictor.parameters()}
    if isinstance(predictor, PipelinePredictor):
        # A model without a closed form is answered by its own predict: the worker needs the
        # fitted model itself, which only the watcher (MLflow) could load from the registry.
        name = f"model-{model.version}-{model.loaded_at.timestamp():.6f}.pkl"
        if not (folder / name).exists():
            _replace(folder / name, pickle.dumps(predictor.model, protocol=5))
        return {"kind": predictor.kind, "pickle": name, "features": list(predictor.features)}
    raise TypeError(f"cannot hand a {type(predictor).__name__} to the workers")


def _build(entry: dict[str, Any], folder: Path) -> Predictor:
    if entry["kind"] == QuadraticPredictor.kind:
        return QuadraticPredictor.from_parameters(entry["parameters"])
    if entry["kind"] == PipelinePredictor.kind:
        # The file is ours: written by the watcher into the private folder of this server.
        model = pickle.loads((folder / entry["pickle"]).read_bytes())
        return PipelinePredictor(model, entry["features"])
    raise ValueError(f"unknown predictor kind {entry['kind']!r}")


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _remove_unused_pickles(folder: Path, model: dict[str, Any] | None) -> None:
    keep = model["predictor"].get("pickle") if model else None
    for stale in folder.glob("model-*.pkl"):
        if stale.name != keep:
            stale.unlink(missing_ok=True)
