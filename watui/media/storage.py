"""Where media files live once a message has one, by the store in use:

- :class:`FileMediaStorage` (SQLite, one node): ``<data-dir>/media/files/<session_id>/<media_id>``,
  files 0600 in directories 0700;
- :class:`PgMediaStorage` (cluster mode): in PostgreSQL, so every node serves every file: a
  ``media`` row per file and its bytes in ``media_chunks`` rows of :data:`CHUNK` bytes (bytea,
  stored uncompressed: media is compressed already). A table rather than large objects by
  measurement (docs/cluster.md, "Media"): 58 against 33 MB/s written, 354 against 192 MB/s
  read, 1.04 against 1.35 bytes on disk per byte stored, and a session's files go with one
  ``DELETE``.

Files arrive from :func:`staging_dir` (a send's checked file) or an engine's download
directory (``<data-dir>/media/<session_id>``, :mod:`watui.manager.engine_options`): ``put``
takes them over (moves or copies, then removes the staged file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from watui.stores.base import StoreProtocol

CHUNK = 1024 * 1024
"""Bytes per PostgreSQL chunk row, and per read of a file."""
CHUNKS_PER_INSERT = 8


def new_media_id() -> str:
    return "med_" + secrets.token_hex(12)


def media_root(data_dir: Path) -> Path:
    return data_dir / "media"


def staging_dir(data_dir: Path) -> Path:
    """Where files wait to be sent or stored (one file system with the SQLite media files,
    so storing one is a rename). Created 0700."""
    path = media_root(data_dir) / ".staging"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class MediaStorage(Protocol):
    async def put(self, session_id: str, media_id: str, source: Path) -> int:
        """Keep ``source`` as ``media_id`` of ``session_id`` (the staged file is gone
        afterwards); its size."""

    async def size(self, session_id: str, media_id: str) -> int | None:
        """The stored file's size, or None when there is none (never stored, or pruned)."""

    def read(self, session_id: str, media_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of a stored file, in pieces."""

    async def delete(self, session_id: str, media_id: str) -> None:
        """One file (none: nothing happens)."""

    async def delete_session(self, session_id: str) -> None:
        """Every file of ``session_id``."""

    async def prune(self, *, before: datetime, max_total_bytes: int | None) -> tuple[int, int]:
        """Delete files stored before ``before``, then the oldest until all of them together
        fit ``max_total_bytes``; (files deleted, bytes freed)."""


class FileMediaStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, session_id: str, media_id: str) -> Path:
        if "/" in session_id or "/" in media_id or media_id.startswith("."):
            raise ValueError("not an id")
        return self.root / session_id / media_id

    async def put(self, session_id: str, media_id: str, source: Path) -> int:
        target = self._path(session_id, media_id)

        def move() -> int:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(source, 0o600)
            try:
                os.replace(source, target)
            except OSError:  # another file system (an engine's own download directory)
                shutil.copyfile(source, target)
                os.chmod(target, 0o600)
                source.unlink(missing_ok=True)
            return target.stat().st_size

        return await asyncio.to_thread(move)

    async def size(self, session_id: str, media_id: str) -> int | None:
        try:
            return self._path(session_id, media_id).stat().st_size
        except (OSError, ValueError):
            return None

    async def read(self, session_id: str, media_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        with open(self._path(session_id, media_id), "rb") as f:  # noqa: ASYNC230 - small reads
            f.seek(start)
            left = end - start + 1
            while left > 0:
                piece = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    async def delete(self, session_id: str, media_id: str) -> None:
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(self._path(session_id, media_id).unlink, True)

    async def delete_session(self, session_id: str) -> None:
        if "/" in session_id or not session_id:
            return
        await asyncio.to_thread(shutil.rmtree, self.root / session_id, True)

    async def prune(self, *, before: datetime, max_total_bytes: int | None) -> tuple[int, int]:
        return await asyncio.to_thread(self._prune, before.timestamp(), max_total_bytes)

    def _prune(self, before: float, max_total_bytes: int | None) -> tuple[int, int]:
        files: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return 0, 0
        for session_dir in self.root.iterdir():
            if session_dir.name.startswith(".") or not session_dir.is_dir():
                continue
            for path in session_dir.iterdir():
                try:
                    st = path.stat()
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        deleted = freed = 0
        for mtime, size, path in files:
            if mtime >= before and (max_total_bytes is None or total <= max_total_bytes):
                break
            path.unlink(missing_ok=True)
            total -= size
            deleted += 1
            freed += size
        return deleted, freed


class PgMediaStorage:
    """Media in PostgreSQL (the ``media`` and ``media_chunks`` tables of
    :mod:`watui.stores.postgres_schema`), through the store's pooled connections."""

    def __init__(self, store: StoreProtocol) -> None:
        self.store = store

    async def put(self, session_id: str, media_id: str, source: Path) -> int:
        sql = "INSERT INTO media_chunks(media_id, seq, data) SELECT $1, s.i - 1 + $2, s.d FROM unnest($3::bytea[]) WITH ORDINALITY AS s(d, i)"
        size = seq = 0
        with open(source, "rb") as f:  # noqa: ASYNC230 - read in pieces off the loop
            while True:
                pieces = []
                for _ in range(CHUNKS_PER_INSERT):
                    piece = await asyncio.to_thread(f.read, CHUNK)
                    if not piece:
                        break
                    pieces.append(piece)
                if not pieces:
                    break
                await self.store.fetchall(sql, (media_id, seq, pieces))
                seq += len(pieces)
                size += sum(len(p) for p in pieces)
        # The row last: a file is readable only once all of it is in.
        await self.store.fetchall(
            "INSERT INTO media(id, session_id, size, created_at) VALUES ($1, $2, $3, $4)",
            (media_id, session_id, size, datetime.now(UTC)),
        )
        await asyncio.to_thread(source.unlink, True)
        return size

    async def size(self, session_id: str, media_id: str) -> int | None:
        rows = await self.store.fetchall(
            "SELECT size FROM media WHERE id = $1 AND session_id = $2", (media_id, session_id))
        return int(rows[0][0]) if rows else None

    async def read(self, session_id: str, media_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        first, last = start // CHUNK, end // CHUNK
        seq = first
        while seq <= last:
            upto = min(last, seq + CHUNKS_PER_INSERT - 1)
            rows = await self.store.fetchall(
                "SELECT seq, data FROM media_chunks WHERE media_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                (media_id, seq, upto))
            for row in rows:
                data: bytes = row[1]
                offset = int(row[0]) * CHUNK
                lo = max(start - offset, 0)
                hi = min(end - offset + 1, len(data))
                if lo < hi:
                    yield data[lo:hi]
            seq = upto + 1

    async def delete(self, session_id: str, media_id: str) -> None:
        await self.store.fetchall(
            "WITH gone AS (DELETE FROM media WHERE id = $1 AND session_id = $2 RETURNING id)"
            " DELETE FROM media_chunks WHERE media_id IN (SELECT id FROM gone)", (media_id, session_id))

    async def delete_session(self, session_id: str) -> None:
        await self.store.fetchall(
            "WITH gone AS (DELETE FROM media WHERE session_id = $1 RETURNING id)"
            " DELETE FROM media_chunks WHERE media_id IN (SELECT id FROM gone)", (session_id,))

    async def prune(self, *, before: datetime, max_total_bytes: int | None) -> tuple[int, int]:
        gone = list(await self.store.fetchall(
            "DELETE FROM media WHERE created_at < $1 RETURNING id, size", (before,)))
        if max_total_bytes is not None:
            gone += await self.store.fetchall(
                "DELETE FROM media WHERE id IN (SELECT id FROM (SELECT id, SUM(size) OVER"
                " (ORDER BY created_at DESC, id DESC) AS upto FROM media) AS m WHERE upto > $1)"
                " RETURNING id, size", (max_total_bytes,))
        if gone:
            await self.store.fetchall(
                "DELETE FROM media_chunks WHERE media_id = ANY($1::text[])", ([r[0] for r in gone],))
        return len(gone), sum(int(r[1]) for r in gone)


def clean_staging(data_dir: Path, *, older_than: float) -> int:
    """Delete staged files left more than ``older_than`` seconds ago (a send or a download
    cut short by a crash); how many went."""
    root = media_root(data_dir)
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than
    gone = 0
    for folder in (root / ".staging", *(p for p in root.glob("ses_*") if p.is_dir())):
        for path in folder.glob("*") if folder.is_dir() else ():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone += 1
            except OSError:
                continue
    return gone


def media_storage(store: StoreProtocol, data_dir: Path) -> MediaStorage:
    """The storage that goes with ``store``: PostgreSQL's in cluster mode, else files."""
    if store.dialect == "postgresql":
        return PgMediaStorage(store)
    return FileMediaStorage(media_root(data_dir) / "files")
