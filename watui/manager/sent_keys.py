"""Idempotency keys of sends: a send retried with the same ``Idempotency-Key`` never sends
twice, whichever node of a cluster the retry reaches.

Before the engine is called, the key is recorded (with no message yet) in the store every node
shares; once the message is written the key points at it. A retry then finds:

- the key with its message: the same message is answered again (``201``, header
  ``Idempotent-Replayed: true``), and nothing is sent;
- the key with no message: the first send is still under way, or its node died between the
  engine and the store, so whether it left is unknown: ``409 CONFLICT``, and nothing is sent
  (at most once; after :data:`KEPT` the key is forgotten);
- no key: a send, as without one.

A send that fails (the engine refused it, the session was not connected, bad input) gives its
key back, so a retry sends. Calls for one key on one node wait for each other; a session's
sends all go to the node that runs it, so that is where they meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from watui.errors import Conflict, ValidationFailed
from watui.stores.dialects import sql_for

if TYPE_CHECKING:
    from watui.clock import Clock
    from watui.models import Message
    from watui.stores.base import StoreProtocol

KEPT = timedelta(hours=24)
"""How long a key is remembered (retention forgets older ones)."""
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValidationFailed("Idempotency-Key must be 1 to 255 printable ASCII characters, no spaces",
                               details={"header": "Idempotency-Key"})
    return key


class SentKeys:
    def __init__(self, store: StoreProtocol, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        d = sql_for(store)
        self._d = d
        self._find = d.sql("SELECT message_row FROM sent_keys WHERE session_id = ? AND key = ?")
        self._take = d.sql("INSERT INTO sent_keys(session_id, key, message_row, created_at) VALUES (?, ?, NULL, ?)")
        self._done = d.sql("UPDATE sent_keys SET message_row = ? WHERE session_id = ? AND key = ?")
        self._give_back = d.sql("DELETE FROM sent_keys WHERE session_id = ? AND key = ? AND message_row IS NULL")
        self.prune_sql = d.sql("DELETE FROM sent_keys WHERE created_at < ?")

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, session_id: str, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault((session_id, key), asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get((session_id, key)) is lock:
                del self._locks[(session_id, key)]

    async def send_once(
        self, session_id: str, key: str, send: Callable[[], Awaitable[Message]],
    ) -> tuple[Message, bool]:
        """``send()`` unless a send with ``key`` was made for the session; the message, and
        whether it is the earlier send's (replayed)."""
        async with self._one_at_a_time(session_id, key):
            rows = await self.store.fetchall(self._find, (session_id, key))
            if rows:
                if rows[0][0] is not None:
                    earlier = await self.store.get_message(session_id, int(rows[0][0]))
                    if earlier is not None:
                        return earlier, True
                raise Conflict(
                    "A send with this Idempotency-Key is under way, or its outcome is unknown (its node"
                    " stopped while it was sending); nothing was sent again",
                    details={"idempotency_key": key},
                )
            await self.store.write(statements=[(self._take, (session_id, key, self._d.ts(self.clock.now())))])
            try:
                message = await send()
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.store.write(statements=[(self._give_back, (session_id, key))])
                raise
            await self.store.write(statements=[(self._done, (message.id, session_id, key))])
            return message, False
