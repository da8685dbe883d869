"""The cluster's key cache over a real store: a key known to the node keeps working while
the store cannot answer, a revocation is honoured once the entry is older than the TTL, and
unknown or revoked keys are never kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from watui.errors import StoreUnavailable
from watui.server.key_cache import KeyCache
from watui.stores.sqlite import Store


class Away:
    """The store as an outage leaves it: every lookup fails to connect."""

    async def find_api_key(self, secret: str) -> None:
        raise ConnectionRefusedError(111, "Connect call failed")


async def test_known_keys_outlive_an_outage_and_revocations_land_within_the_ttl(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "watui.db")
    try:
        now = [0.0]
        cache = KeyCache(10, clock=lambda: now[0])
        key, secret = await store.create_api_key("alice")
        _, other = await store.create_api_key("bob")
        assert (await cache.find(store, secret)).id == key.id  # type: ignore[union-attr]

        now[0] = 60.0  # long after the TTL, and the database is away: the key still works
        assert (await cache.find(Away(), secret)).id == key.id  # type: ignore[arg-type, union-attr]
        assert cache.served_stale == 1
        with pytest.raises(StoreUnavailable):  # a key this node never saw: nobody to ask
            await cache.find(Away(), other)  # type: ignore[arg-type]

        await store.revoke_api_key(key.id)
        assert await cache.find(store, secret) is None
        with pytest.raises(StoreUnavailable):  # revoked keys are not kept for the next outage
            await cache.find(Away(), secret)  # type: ignore[arg-type]
        assert await cache.find(store, "wat_unknown") is None

        carol, fresh = await store.create_api_key("carol")
        assert await cache.find(store, fresh) is not None
        await store.revoke_api_key(carol.id)  # on another node, say
        now[0] = 65.0  # within the TTL the node may still let it in ...
        assert await cache.find(store, fresh) is not None
        now[0] = 71.0  # ... and never after it
        assert await cache.find(store, fresh) is None
    finally:
        await store.close()
