"""SQL statements of the pipeline, one per file, shipped as package data."""

import functools
from importlib.resources import files


@functools.cache
def load(name: str) -> str:
    """Return the text of `etf_assets/sql/<name>.sql`."""
    return files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
