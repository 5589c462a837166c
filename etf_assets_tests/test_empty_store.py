"""New MLflow stores copied from the empty one: the same store as MLflow builds, or built."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from mlflow import MlflowClient

from etf_assets.model.empty_store import build_store, template_path
from etf_assets.model.tracking import artifact_location, create_store, open_experiment


def _contents(database: Path) -> dict[str, object]:
    """Tables, columns, indexes and rows of a store, without the Default experiment's path and
    times (not the CREATE statements' text: MLflow's migrations order constraints differently
    from one build to the next)."""
    with closing(sqlite3.connect(database)) as con:
        objects = sorted(con.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall())
        tables = [name for kind, name, _ in objects if kind == "table"]
        columns = {t: con.execute(f'PRAGMA table_info("{t}")').fetchall() for t in tables}
        schema = {"objects": objects, "columns": columns}
        rows = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
        rows["experiments"] = con.execute(
            "SELECT experiment_id, name, lifecycle_stage FROM experiments"
        ).fetchall()
    return {"schema": schema, "rows": rows}


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def test_a_copied_store_is_the_store_mlflow_builds_with_its_own_default_experiment(
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    built, copied = tmp_path / "built", tmp_path / "copied"
    # Built by MLflow alone, without any template: the reference.
    build_store(built / "mlflow.db", artifact_location(_uri(built)), None)
    assert create_store(_uri(tmp_path / "first"), templates)  # builds and keeps the template
    assert template_path(templates).is_file()
    assert create_store(_uri(copied), templates)

    assert _contents(copied / "mlflow.db") == _contents(built / "mlflow.db")
    default = MlflowClient(_uri(copied)).get_experiment("0")
    assert default.artifact_location == (copied / "mlartifacts" / "0").resolve().as_uri()
    first = MlflowClient(_uri(tmp_path / "first")).get_experiment("0")
    assert first.artifact_location == (tmp_path / "first" / "mlartifacts" / "0").resolve().as_uri()
    experiment = open_experiment(_uri(copied))
    assert MlflowClient(_uri(copied)).get_experiment(experiment).name == "etf_volume"
    assert not create_store(_uri(copied), templates)  # an existing store is left as it is


def test_a_broken_or_unwritable_template_folder_still_gives_a_store(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    template_path(templates).write_bytes(b"not a database")
    assert create_store(_uri(tmp_path / "a"), templates)
    assert open_experiment(_uri(tmp_path / "a"))
    assert not list(tmp_path.glob("a/*.partial"))

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the template folder would be")
    assert create_store(_uri(tmp_path / "b"), blocked)
    assert open_experiment(_uri(tmp_path / "b"))
