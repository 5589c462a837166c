"""SQL statements, one per file, in each stage's `sql/` folder and shipped as package data."""

import functools
from collections.abc import Callable
from importlib.resources import files


def sql_loader(package: str) -> Callable[[str], str]:
    """A `load(name)` that returns the text of `<package>/<name>.sql`."""

    @functools.cache
    def load(name: str) -> str:
        return files(package).joinpath(f"{name}.sql").read_text(encoding="utf-8")

    return load
