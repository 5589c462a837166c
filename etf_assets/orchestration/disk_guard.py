"""A step that runs out of disk space fails saying so, where, and that nothing changed.

Without this, the user reads a DuckDB or OS traceback, and the failed write's leftovers (a
warehouse file grown to fill the disk, a committed load table) keep the disk full, so that the
next run, and the instance's database on the same disk, fail too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from etf_assets.orchestration.resources import WarehouseLockedError
from etf_assets.storage.disk_space import (
    NotEnoughSpaceError,
    disk_full_error,
    existing_folder,
    failed_path,
    first_line,
    human,
    mount_point,
)
from etf_assets.storage.warehouse_space import (
    CommittedButNotCheckpointedError,
    reclaim_warehouse,
)


@contextmanager
def failing_clearly_on_full_disk(
    step: str,
    folders: Sequence[Path],
    unchanged: str,
    warehouse: Path | None = None,
    leftover_tables: Sequence[str] = (),
) -> Iterator[None]:
    """Turn a refusal for lack of space, or a write that found the disk full, into a
    `dg.Failure` whose description says so first.

    Wrap the step's work including its warehouse connection: after any failure, once the
    connection is closed, the space the failed writes left in `warehouse` is given back (and
    `leftover_tables` dropped).

    Args:
        step: what was being done, for the message ("loading price_volume_table").
        folders: where the step writes, the first being the main one; the message names the one
            the failed write names, else the first.
        unchanged: what the failure left as it was, for the message.
        warehouse: the DuckDB file the step writes, if any.
        leftover_tables: tables the step may have committed on its way (fixed names).
    """
    try:
        yield
    except NotEnoughSpaceError as exc:
        raise dg.Failure(description=str(exc)) from None
    except dg.Failure:
        raise
    except BaseException as exc:
        full = disk_full_error(exc)
        if warehouse is not None and not isinstance(exc, WarehouseLockedError):
            reclaim_warehouse(warehouse, leftover_tables)
        if full is None:
            raise
        where = failed_path(full) or folders[0]
        folder = existing_folder(where)
        free = shutil.disk_usage(folder).free
        if isinstance(exc, CommittedButNotCheckpointedError):
            state = (
                "The new data was committed before the disk filled; DuckDB writes it into the "
                "warehouse file the next time it opens with room."
            )
        else:
            state = f"{unchanged}; what the failed step wrote was removed."
        raise dg.Failure(
            description=(
                f"The disk is full: no space left on device in {folder} (the filesystem at "
                f"{mount_point(folder)}) while {step}. {state} "
                f"{free:,} bytes ({human(free)}) are free there now. Free space on that disk, "
                "or set ETF_DATA_DIR to a folder on a larger one, and run again: nothing needs "
                f"cleaning by hand. ({first_line(full)})"
            ),
            metadata={"disk_full": True, "folder": str(folder), "free_bytes": free},
        ) from exc
