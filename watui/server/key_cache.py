"""API keys a cluster node has looked up, kept for a lease TTL.

Every call is authenticated, and in a cluster the keys are in PostgreSQL: without a cache,
every call (reads too) would need the database, and a database failover would turn every call
into an error. A node keeps each key it found for ``ttl`` seconds (the lease TTL: a revocation
made on any node is honoured everywhere within it) and asks the store again after that. When
the store cannot answer (an outage), a key this node knew is still accepted, for as long as
the outage lasts; a key it never saw gets ``503 STORE_UNAVAILABLE``. Unknown and revoked keys
are never cached, so a key created on another node works at once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watui.stores.outages import is_outage, unavailable

if TYPE_CHECKING:
    from watui.models import ApiKey
    from watui.stores.base import StoreProtocol

MAX_KEYS = 10_000
"""Keys kept at most (least recently used go first)."""


@dataclass(frozen=True, slots=True)
class _Known:
    key: ApiKey
    at: float


class KeyCache:
    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic, size: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self.clock = clock
        self.size = size
        self._known: OrderedDict[bytes, _Known] = OrderedDict()
        self.served_stale = 0
        """Calls let in on a key known from before, while the store could not answer."""

    async def find(self, store: StoreProtocol, secret: str) -> ApiKey | None:
        """The key ``secret`` belongs to (None: unknown). Raises ``StoreUnavailable`` when the
        store cannot answer and the key was not known here."""
        digest = hashlib.sha256(secret.encode()).digest()
        known = self._known.get(digest)
        now = self.clock()
        if known is not None and now - known.at < self.ttl:
            self._known.move_to_end(digest)
            return known.key
        try:
            key = await store.find_api_key(secret)
        except Exception as exc:
            if not is_outage(exc):
                raise
            if known is not None:
                self.served_stale += 1
                return known.key
            raise unavailable(exc, reading=True) from exc
        if key is None or key.revoked_at is not None:
            self._known.pop(digest, None)
            return key
        self._known[digest] = _Known(key, now)
        self._known.move_to_end(digest)
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return key
