"""Open SSE streams: counted per API key and in total, and ended when their key is revoked.

Every stream holds a :class:`StreamLease` from :class:`StreamRegistry` for as long as it is
open. ``WATUI_MAX_STREAMS_PER_KEY`` (non-admin keys) and ``WATUI_MAX_STREAMS`` (everyone) bound
them: one more answers ``429 TOO_MANY_STREAMS`` instead of running the process out of file
descriptors. Keys can be revoked by another process (``watui keys revoke`` writes the same
database), so :meth:`StreamRegistry.watch_revocations` looks at the keys of open streams every
``REVOCATION_POLL`` seconds and ends the streams of any key revoked since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from watui.errors import WatuiError
from watui.stores.base import StoreProtocol
from watui.stores.dialects import sql_for

log = logging.getLogger("watui.server")

REVOCATION_POLL = 1.0
"""Seconds between looks for revoked keys (revocation ends streams within about this long)."""


class TooManyStreams(WatuiError):
    status = 429
    code = "TOO_MANY_STREAMS"


@dataclass(eq=False)
class StreamLease:
    """One open stream: released when it ends; ``close`` ends it from outside."""

    registry: StreamRegistry
    key_id: str | None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.registry._release(self)

    async def close(self) -> None:
        for closer in self.closers:
            with contextlib.suppress(Exception):
                await closer()


class StreamRegistry:
    def __init__(self, *, per_key: int, total: int) -> None:
        self.per_key = per_key
        self.total = total
        self._by_key: dict[str | None, set[StreamLease]] = {}
        self.count = 0
        self.refused = 0
        """Streams refused with 429 since start."""

    def acquire(self, key_id: str | None, *, admin: bool) -> StreamLease:
        """A lease for one more stream of ``key_id``, or ``429 TOO_MANY_STREAMS``."""
        mine = self._by_key.get(key_id, set())
        if self.count >= self.total:
            self.refused += 1
            log.warning("refused a stream: the server holds its maximum of %d", self.total)
            raise TooManyStreams(f"The server already holds its maximum of {self.total} streams",
                                 details={"max_streams": self.total})
        if not admin and len(mine) >= self.per_key:
            self.refused += 1
            log.warning("refused a stream: a key holds its maximum of %d", self.per_key)
            raise TooManyStreams(f"This key already holds its maximum of {self.per_key} streams",
                                 details={"max_streams_per_key": self.per_key})
        lease = StreamLease(self, key_id)
        self._by_key.setdefault(key_id, set()).add(lease)
        self.count += 1
        return lease

    def _release(self, lease: StreamLease) -> None:
        leases = self._by_key.get(lease.key_id)
        if leases is not None and lease in leases:
            leases.discard(lease)
            self.count -= 1
            if not leases:
                del self._by_key[lease.key_id]

    async def end_key(self, key_id: str) -> int:
        """End every stream of ``key_id``; how many there were."""
        leases = list(self._by_key.get(key_id, ()))
        for lease in leases:
            await lease.close()
        return len(leases)

    async def watch_revocations(self, revoked: Callable[[list[str]], Awaitable[list[str]]],
                                interval: float = REVOCATION_POLL) -> None:
        """Forever: end the streams of keys that ``revoked(open key ids)`` says are revoked."""
        while True:
            await asyncio.sleep(interval)
            keys = [k for k in self._by_key if k is not None]
            if not keys:
                continue
            try:
                gone = await revoked(keys)
            except Exception:
                log.warning("could not check for revoked keys", exc_info=True)
                continue
            for key_id in gone:
                ended = await self.end_key(key_id)
                log.info("key %s was revoked: ended its %d stream(s)", key_id, ended)


def revoked_keys_query(store: StoreProtocol) -> Callable[[list[str]], Awaitable[list[str]]]:
    """``revoked(ids)`` over the store: the ids among ``ids`` revoked (or deleted) by now."""
    d = sql_for(store)
    active = d.sql(f"SELECT id FROM api_keys WHERE revoked_at IS NULL AND {d.member('id')}")

    async def revoked(ids: list[str]) -> list[str]:
        still = {row[0] for row in await store.fetchall(active, (d.values(ids),))}
        return [key_id for key_id in ids if key_id not in still]

    return revoked
