"""Replace a directory as a whole: build the new one beside it, then swap it in by renames."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def new_pending(target: Path) -> Path:
    """Create and return an empty hidden folder beside `target` to build its replacement in."""
    pending = target.parent / f".{target.name}.pending-{uuid.uuid4().hex[:8]}"
    pending.mkdir(parents=True)
    return pending


def remove_leftovers(target: Path) -> None:
    """Remove the pending and retired folders that runs killed half-way left beside `target`.

    Only while no other process can be building a replacement of `target` (see `exclusive`).
    """
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def exclusive(target: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold a lock that makes replacing `target` one process at a time; `on_wait` is called
    first when another process holds it. The lock file is empty and the lock goes with the
    process that held it, however it ended."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def publish(pending: Path, target: Path) -> None:
    """Make `pending` the new `target`; leftovers of runs killed half-way are removed too."""
    retired = target.parent / f".{target.name}.retired-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(retired)
    pending.rename(target)
    remove_leftovers(target)
