"""Replace a directory as a whole: build the new one beside it, then swap it in by renames."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def new_pending(target: Path) -> Path:
    """Create and return an empty hidden folder beside `target` to build its replacement in."""
    pending = target.parent / f".{target.name}.pending-{uuid.uuid4().hex[:8]}"
    pending.mkdir(parents=True)
    return pending


def publish(pending: Path, target: Path) -> None:
    """Make `pending` the new `target`; leftovers of runs killed half-way are removed too."""
    retired = target.parent / f".{target.name}.retired-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(retired)
    pending.rename(target)
    for leftover in target.parent.glob(f".{target.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)
