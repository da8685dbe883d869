"""Where each session's whatsmeow device is kept: a file of its own, or the cluster's database.

Alone, a session's whatsmeow store is an SQLite file of its own (the ``auth_path`` the manager
passes), and it has a device once that file holds one.

**Cluster mode** (a ``database_url``): every session's whatsmeow store is the one PostgreSQL
database of the cluster. Neonize 0.5.2 passes its database string to Go, which opens it with
whatsmeow's ``sqlstore`` on the ``postgres`` driver (lib/pq) when it starts with ``postgres``
(``postgres://`` or ``postgresql://``), else as an SQLite file. ``Neonize()`` then picks the
device: by JID when one is given (``container.GetDevice``), a blank new one with
``new_device`` (``container.NewDevice``), else the first stored one. So watui keeps, per
session, the JID of its device in ``engine_auth`` (:mod:`watui.engines.auth`), written at
pair success before the link is reported; a connect passes that JID only once it checked the
device row exists (``GetDevice`` answers a missing JID with no device, and whatsmeow then
dereferences it: a Go panic), and a session without one links a new device. lib/pq defaults to
``sslmode=require``; a URL without ``sslmode`` gets ``prefer`` (what libpq and asyncpg do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import asyncpg

from watui.engines.auth import PgAuthStore
from watui.engines.neonize.go import _in_thread


class _Devices:
    """The auth state of an engine's sessions: :meth:`has_auth`, :meth:`remove_auth`, and
    what ``Neonize()`` opens (:meth:`database_for`)."""

    def __init__(self, database_url: str | None, engine: str) -> None:
        self.auth_db = PgAuthStore(database_url, engine) if database_url else None
        """Cluster mode: which device is each session's (``engine_auth``)."""
        self.database = whatsmeow_dsn(database_url) if database_url else None
        """Cluster mode: the whatsmeow store every session shares."""

    def database_for(self, auth_path: Path) -> str:
        """What ``Neonize()`` opens: the cluster's PostgreSQL URL, or this session's file."""
        return self.database or quote(str(auth_path.resolve()), safe="/")

    def remember_jid(
        self, session_id: str
    ) -> Callable[[str, asyncio.AbstractEventLoop], None] | None:
        """Cluster mode: how a run (on its Go thread) records the JID its phone linked."""
        auth_db = self.auth_db
        if auth_db is None:
            return None

        def remember(jid: str, loop: asyncio.AbstractEventLoop) -> None:
            save = auth_db.save(session_id, json.dumps({"jid": jid}))
            asyncio.run_coroutine_threadsafe(save, loop).result(timeout=30)

        return remember

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        """True if the session has a linked device: in its own db file (read-only; never
        creates it), or in cluster mode in PostgreSQL."""
        if self.auth_db is not None:
            return await self.linked_jid(session_id) is not None
        return self._file_has_device(Path(auth_path))

    def _file_has_device(self, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=2
            )
        except sqlite3.Error:
            return False
        try:
            row = conn.execute("SELECT 1 FROM whatsmeow_device LIMIT 1").fetchone()
        except sqlite3.Error:  # not (yet) a whatsmeow database
            return False
        finally:
            conn.close()
        return row is not None

    async def linked_jid(self, session_id: str) -> str | None:
        """Cluster mode: the JID of the session's device, if whatsmeow's store still has it."""
        assert self.auth_db is not None
        jid = _stored_jid(await self.auth_db.load(session_id))
        if jid is None:
            return None
        pool = await self.auth_db.pool()
        try:
            found = await pool.fetchval("SELECT 1 FROM whatsmeow_device WHERE jid = $1", jid)
        except asyncpg.UndefinedTableError:  # no neonize client ever opened this database
            return None
        return jid if found else None

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        """Delete the session's auth: its db and SQLite side files, or in cluster mode its
        whatsmeow device (the keys, sessions and contacts go with it: ``ON DELETE CASCADE``)."""
        if self.auth_db is not None:
            async with self.auth_db.transaction() as conn:
                jid = _stored_jid(await conn.fetchval(
                    "SELECT data FROM engine_auth WHERE session_id = $1 FOR UPDATE", session_id))
                if jid is not None:
                    with contextlib.suppress(asyncpg.UndefinedTableError):
                        async with conn.transaction():  # a savepoint: a missing table is no error
                            await conn.execute("DELETE FROM whatsmeow_device WHERE jid = $1", jid)
                await self.auth_db.delete(session_id, conn)
            return
        path = Path(auth_path)

        def remove() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)

        await _in_thread(remove)

    async def aclose(self) -> None:
        """Close the pool of the cluster's database, if there is one."""
        if self.auth_db is not None:
            await self.auth_db.aclose()


def whatsmeow_dsn(database_url: str) -> str:
    """The URL for whatsmeow's lib/pq: ``sslmode=prefer`` unless the URL names one (lib/pq
    would require TLS, where libpq and asyncpg prefer it)."""
    query = dict(parse_qsl(urlsplit(database_url).query))
    if "sslmode" in query:
        return database_url
    return database_url + ("&" if "?" in database_url else "?") + "sslmode=prefer"


def _stored_jid(data: str | None) -> str | None:
    """The JID in an ``engine_auth`` record of this engine (``{"jid": …}``)."""
    if data is None:
        return None
    try:
        jid = json.loads(data).get("jid")
    except (ValueError, AttributeError):
        return None
    return jid if isinstance(jid, str) and jid else None
