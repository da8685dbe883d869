"""This process as one node of a cluster.

The node registers itself in the nodes table and then, every ``lease_ttl / 3`` seconds,
heartbeats and renews the leases of the sessions it runs (a lease it finds taken by another
node means it was paused or cut off for longer than the TTL: it drops that session without
writing). Every second it also looks for *orphans*, sessions that want a node (running, or
parked to resume) with no live lease, because their node died or handed them over on
shutdown, and takes over as many as its capacity allows.

It answers the router's question too (:class:`watui.cluster.types.Locator`): which other node
runs a session, and which nodes there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from watui.cluster.fanout import ClusterFeed
from watui.cluster.leases import Leases
from watui.cluster.nodes import Nodes
from watui.cluster.types import Holder, NodeInfo, Takeover
from watui.config import Settings
from watui.stores.postgres import PostgresStore

log = logging.getLogger(__name__)

SCAN_INTERVAL = 1.0
"""Seconds between two looks for orphaned sessions."""
TAKEOVER_BATCH = 100
"""Sessions claimed at most per look (the rest on the next ones, or by other nodes)."""


class ClusterNode:
    def __init__(self, handover: Takeover, store: PostgresStore, settings: Settings) -> None:
        self.node_id = settings.node_id
        self.lease_ttl = settings.lease_ttl
        self.capacity = settings.node_capacity
        self.leases = Leases(store.pool, self.node_id, settings.lease_ttl)
        self.table = Nodes(store.pool, self.node_id, settings.advertised_url, settings.node_capacity)
        self.feed = ClusterFeed(store, settings.redis_url, self.node_id)
        self.handover = handover
        self.takeovers = 0
        """Sessions this node took over from others (or resumed after a restart)."""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        store.fencing = self.leases

    async def start(self) -> None:
        await self.table.register()
        await self.feed.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="watui-cluster-node")

    async def stop_taking_over(self) -> None:
        """Shutdown, first step: take no more sessions (the ones here are parked next)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        """Shutdown, last step (after the sessions were parked and their leases released)."""
        await self.stop_taking_over()
        with contextlib.suppress(Exception):
            await self.leases.release_all()
        with contextlib.suppress(Exception):
            await self.table.leave()
        await self.feed.aclose()

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        renew_every = self.lease_ttl / 3
        next_renew = 0.0
        while not self._closing:
            try:
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + renew_every
                    await self._renew()
                await self._take_over_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the next round tries again
                log.warning("cluster node %s: %s", self.node_id, exc)
            await asyncio.sleep(min(SCAN_INTERVAL, renew_every))

    async def _renew(self) -> None:
        lost = await self.leases.renew()
        for session_id in lost:
            log.warning("lost the lease on %s to another node; dropping it here", session_id)
            await self.handover.drop(session_id)
        await self.table.heartbeat(len(self.leases.tokens))

    async def _take_over_orphans(self) -> None:
        free = self.capacity - len(self.leases.tokens)
        if free <= 0 or self._closing:
            return
        claimed = await self.leases.claim_orphans(min(free, TAKEOVER_BATCH))
        if not claimed:
            return
        log.info("taking over %d sessions", len(claimed))
        self.takeovers += len(claimed)
        results = await asyncio.gather(
            *(self.handover.take_over(session_id) for session_id in claimed), return_exceptions=True
        )
        for session_id, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("taking over %s failed: %s", session_id, result)
                with contextlib.suppress(Exception):
                    await self.leases.release(session_id)

    # ---------------------------------------------------------------- the Locator

    async def locate(self, session_id: str) -> Holder | None:
        if session_id in self.leases.tokens:
            return None
        return await self.leases.holder(session_id)

    async def nodes(self) -> list[NodeInfo]:
        return await self.table.list(within=3 * self.lease_ttl)
