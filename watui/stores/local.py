"""One process, one data dir: lock it, then open its SQLite store (the default, no cluster).

The lock and the file permissions are :mod:`watui.stores.datadir`'s; the store is
:mod:`watui.stores.sqlite`'s. This module puts them together in the order that keeps a second
process from writing anything.
"""

from __future__ import annotations

import sqlite3

from watui.config import Settings
from watui.stores.datadir import DataDirLock, DataDirUnusable, make_private
from watui.stores.sqlite import Store


async def open_data_dir(settings: Settings) -> tuple[DataDirLock, Store]:
    """Make the data dir private, lock it, then open its store (in that order: a process
    that cannot lock writes nothing). Raises :class:`DataDirLocked` or
    :class:`DataDirUnusable`, each with a message fit for one line on a terminal."""
    try:
        make_private(settings.data_dir)
    except OSError as exc:
        raise DataDirUnusable(f"cannot create the data dir {settings.data_dir}: {exc.strerror}") from None
    lock = DataDirLock.acquire(settings.data_dir)
    try:
        store = await Store.open(
            settings.db_path, synchronous=settings.sqlite_synchronous, max_batch=settings.commit_max_batch
        )
    except (OSError, sqlite3.Error) as exc:
        lock.release()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataDirUnusable(f"cannot open the database {settings.db_path}: {reason}") from None
    except BaseException:
        lock.release()
        raise
    return lock, store
