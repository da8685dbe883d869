"""This process as one node of a cluster.

The process joins as a new *instance* of its node id (:meth:`ClusterNode.join`, before it
loads or claims anything): if another instance of the same node id is alive, it stops there
(:class:`~watui.cluster.nodes.NodeIdInUse`, exit status 2); if that instance is dead (its
heartbeat went stale), it adopts that instance's live leases at once and resumes them. Then it
heartbeats every :data:`~watui.cluster.nodes.HEARTBEAT_INTERVAL`, and every second (a third of
the TTL, if that is shorter) renews the leases of the sessions it runs, in one statement (a lease it finds taken by another node
means it was paused or cut off for longer than the TTL: it drops that session without
writing). Every half second it also looks for *orphans*, sessions that want a node (running, or
parked to resume) with no live lease, because their node died or handed them over on
shutdown, and takes over its share of them; when another node missed a heartbeat, the next
look is timed for the moment that node's first lease lapses.

When PostgreSQL does not answer, the node keeps running its sessions (nobody can claim them
meanwhile), reports ``degraded`` health, and renews first thing when the database is back.
Leases expire by the database's clock during a long outage, so after one the node claims
nothing until the database has answered it for a full lease TTL: every live holder has renewed
by then, and only the sessions of nodes that really died are taken over.

It answers the router's question too (:class:`watui.cluster.types.Locator`): which other node
runs a session, and which nodes there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass

from watui.cluster.fanout import ClusterFeed
from watui.cluster.identity import ClusterIdentity, load_identity
from watui.cluster.leases import Leases
from watui.cluster.nodes import HEARTBEAT_INTERVAL, STALE_AFTER, Nodes, new_instance
from watui.cluster.types import Holder, NodeInfo, Takeover
from watui.config import Settings
from watui.stores.postgres import PostgresStore

log = logging.getLogger(__name__)

SCAN_INTERVAL = 0.5
"""Seconds between two looks for orphaned sessions: how soon sessions released by a drain are
taken over. A node that missed a heartbeat is watched closer: the next look is timed for the
moment its first lease lapses (:data:`SUSPECT_AFTER`)."""
SUSPECT_AFTER = 1.5 * HEARTBEAT_INTERVAL
"""A node whose heartbeat is this old missed one: if it died, its leases lapse within the TTL,
and the others look for orphans the moment the first one does instead of up to
:data:`SCAN_INTERVAL` later (a live node renews first, and that look finds nothing)."""
LAPSE_MARGIN = 0.02
"""Seconds after a lease's expiry (by PostgreSQL's clock, as a duration) that the look is made."""
RENEW_INTERVAL = 1.0
"""Seconds between two renewals (one statement for all of a node's leases): with the default
TTL of 4 s a dead node's leases lapse 3 to 4 s after its death, and its sessions run elsewhere
a fraction of a second later (the look for them is timed to the lapse, see :data:`SUSPECT_AFTER`)."""
TAKEOVER_BATCH = 100
"""Sessions claimed at most per look (the rest on the next ones, or by other nodes)."""


@dataclass(frozen=True, slots=True)
class Load:
    """Sessions and capacity of this node and of the other live nodes (as of their last
    heartbeat): how a node decides its share of orphans, and whether to hand some over."""

    mine: int
    capacity: int
    others: list[tuple[int, int]]
    """(sessions, capacity) of each other live node."""

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.mine)

    @property
    def room(self) -> int:
        """Free places in the whole cluster."""
        return self.free + sum(max(0, c - n) for n, c in self.others)

    def share(self, orphans: int) -> int:
        """How many of ``orphans`` this node takes: what brings it up to its share of all the
        cluster's sessions (in proportion to capacity), so takeovers spread over the survivors
        instead of the first scanner taking them all, and a node that just handed sessions over
        does not take them back. When the nodes below their share cannot hold them all, every
        node with room takes a part in proportion to its free capacity."""
        if self.free <= 0:
            return 0
        nodes = [(self.mine, self.capacity), *self.others]
        total = sum(n for n, _ in nodes) + orphans
        capacity = sum(c for _, c in nodes)

        def balanced(n: int, c: int) -> int:
            return max(0, min(c - n, math.ceil(total * c / capacity - n)))

        if sum(balanced(n, c) for n, c in nodes) >= orphans:
            return min(orphans, balanced(self.mine, self.capacity))
        return min(orphans, self.free, max(1, math.ceil(orphans * self.free / self.room)))

    def excess(self) -> int:
        """Sessions this node runs beyond its share (the cluster's sessions in proportion to
        capacity), when another node is below its own by more than one: else 0."""
        total = self.mine + sum(n for n, _ in self.others)
        capacity = self.capacity + sum(c for _, c in self.others)
        if capacity <= 0 or not self.others:
            return 0
        target = total * self.capacity / capacity
        if not any(n + 1 < total * c / capacity and n < c for n, c in self.others):
            return 0
        return max(0, math.floor(self.mine - target))


class ClusterNode:
    def __init__(self, handover: Takeover, store: PostgresStore, settings: Settings) -> None:
        self.node_id = settings.node_id
        self.lease_ttl = settings.lease_ttl
        self.capacity = settings.node_capacity
        self.rebalance_rate = settings.rebalance_rate
        self.instance = new_instance()
        """This process: a node id is run by one instance at a time."""
        self.leases = Leases(store.pool, self.node_id, settings.lease_ttl, instance=self.instance)
        self.table = Nodes(
            store.pool, self.node_id, settings.advertised_url, settings.node_capacity, instance=self.instance
        )
        self.feed = ClusterFeed(store, settings.redis_url, self.node_id)
        self._secret = settings.cluster_secret
        self.identity: ClusterIdentity | None = None
        """The cluster's id and secret, read (or made) by :meth:`join`."""
        self.handover = handover
        self.takeovers = 0
        """Sessions this node took over from others (or resumed after a restart)."""
        self.handed_off = 0
        """Sessions this node handed over to nodes with more room (rebalancing)."""
        self.stranded = 0
        """Sessions of dead nodes this node marked as running nowhere (no node had room)."""
        self.adopted = 0
        """Sessions this instance adopted at start from a dead instance of the same node id."""
        self.superseded = False
        """Another instance took this node id over (this one was taken for dead): take nothing."""
        self._adopting: list[tuple[str, int]] = []
        """Adopted sessions not resumed yet: the loop resumes them a batch at a time, between
        its renewals, as it does orphans."""
        self.database_down_since: float | None = None
        """Monotonic time since which the database has not answered this node (None: it
        answers). Health says ``degraded`` meanwhile."""
        self._database_back_at = float("-inf")
        """When the database answered again after an outage this node saw (-inf: no outage
        since start). Orphans are claimed only a full lease TTL after it: holders renew first."""
        self._rebalance_credit = 0.0
        self._rebalance_after = 0.0
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._closing = False
        store.fencing = self.leases

    async def join(self) -> None:
        """Take the node id for this instance, before anything is loaded or claimed: raises
        :class:`~watui.cluster.nodes.NodeIdInUse` if another instance runs it (alive). Learns
        the cluster's id (its Redis keys) and secret (signed node-to-node calls) first."""
        self.identity = await load_identity(self.table.pool, self._secret)
        self.feed.stream = self.identity.stream
        await self.table.join()
        log.info("node %s joined as instance %s", self.node_id, self.instance)

    async def start(self) -> None:
        """After :meth:`join` and once the sessions are loaded: adopt the leases a dead
        instance of this node id left, then heartbeat, renew and look for orphans."""
        await self.feed.start()
        loop = asyncio.get_running_loop()
        self._beat = loop.create_task(self._heartbeats(), name="watui-cluster-heartbeat")
        adopted = await self.leases.adopt()
        if adopted:
            log.info("resuming %d sessions of this node's previous instance", len(adopted))
            self.adopted += len(adopted)
            self.takeovers += len(adopted)
            self._adopting = list(adopted.items())
        self._task = loop.create_task(self._run(), name="watui-cluster-node")

    async def stop_taking_over(self) -> None:
        """Shutdown, first step: take no more sessions (the ones here are parked next)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stop_heartbeats(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def aclose(self) -> None:
        """Shutdown, last step (after the sessions were parked and their leases released)."""
        await self.stop_taking_over()
        await self._stop_heartbeats()
        with contextlib.suppress(Exception):
            await self.leases.release_all()
        with contextlib.suppress(Exception):
            await self.table.leave()
        await self.feed.aclose()

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        renew_every = min(RENEW_INTERVAL, self.lease_ttl / 3)
        next_renew = 0.0
        while not self._closing:
            wait = min(SCAN_INTERVAL, renew_every)
            try:
                if time.monotonic() >= next_renew or self.database_down_since is not None:
                    next_renew = time.monotonic() + renew_every
                    await self._renew()  # first thing when the database is back
                    self._database_answers()
                lapse = await self._take_over_orphans()
                if lapse is not None:
                    wait = min(wait, lapse + LAPSE_MARGIN)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the next round tries again
                self._database_away(exc)
            await asyncio.sleep(0 if self._adopting else wait)

    def _database_away(self, exc: Exception) -> None:
        if self.database_down_since is None:
            self.database_down_since = time.monotonic()
            log.warning("cluster node %s: the database does not answer (%s); the sessions here keep"
                        " running, and nothing is claimed until it has answered for %.0f s",
                        self.node_id, exc, self.lease_ttl)
        else:
            log.debug("cluster node %s: %s", self.node_id, exc)

    def _database_answers(self) -> None:
        if self.database_down_since is not None:
            log.warning("cluster node %s: the database answers again after %.1f s; leases renewed",
                        self.node_id, time.monotonic() - self.database_down_since)
            self.database_down_since = None
            self._database_back_at = time.monotonic()

    async def _heartbeats(self) -> None:
        """Every :data:`HEARTBEAT_INTERVAL`, on a task of its own (a long takeover round must
        not make this instance look dead to a process starting with the same node id)."""
        while True:
            try:
                if not await self.table.heartbeat(len(self.leases.tokens)) and not self.superseded:
                    self.superseded = True
                    log.error("node id %s was taken over by another instance (this one, %s, was"
                              " taken for dead): taking no more sessions; the ones it ran are"
                              " dropped as their leases turn out lost", self.node_id, self.instance)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the next beat tries again (_run says so)
                log.debug("cluster node %s heartbeat: %s", self.node_id, exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _renew(self) -> None:
        lost = await self.leases.renew()
        for session_id in lost:
            log.warning("lost the lease on %s to another node; dropping it here", session_id)
            await self.handover.drop(session_id)

    async def _take_over_orphans(self) -> float | None:
        """One look for orphans, and a takeover of this node's share of them. Returns the
        seconds until the next lease of a node that missed a heartbeat lapses (None: none)."""
        if self._adopting:
            batch, self._adopting = self._adopting[:TAKEOVER_BATCH], self._adopting[TAKEOVER_BATCH:]
            await self._take_over({i: t for i, t in batch if self.leases.tokens.get(i) == t})  # not lost since
            return None
        if self._closing or self.superseded:
            return None
        if time.monotonic() - self._database_back_at < self.lease_ttl:
            # After an outage every lease looks expired, though their nodes are alive and
            # renew as soon as they can: claiming now would move sessions that never stopped.
            return None
        orphans = await self.leases.scan(SUSPECT_AFTER)
        if orphans.count == 0:
            if self.rebalance_rate > 0 and time.monotonic() >= self._rebalance_after:
                await self._rebalance(await self._load())
            return orphans.next_lapse
        load = await self._load()
        share = load.share(orphans.count)
        if share <= 0:
            if load.room == 0:  # no node can take them: say they run nowhere
                await self._strand()
            return orphans.next_lapse
        claimed = await self.leases.claim_orphans(min(share, TAKEOVER_BATCH))
        if claimed:
            log.info("taking over %d sessions", len(claimed))
            self.takeovers += len(claimed)
            await self._take_over(claimed)
        return orphans.next_lapse

    async def _load(self) -> Load:
        """This node's and the other live nodes' sessions and capacity."""
        others = [n for n in await self.table.list(within=STALE_AFTER) if n.node_id != self.node_id]
        return Load(mine=len(self.leases.tokens), capacity=self.capacity,
                    others=[(n.sessions, n.capacity) for n in others])

    async def _strand(self) -> None:
        stranded = await self.leases.claim_orphans(TAKEOVER_BATCH, stranded=True)
        if not stranded:
            return
        log.warning("%d sessions of a dead node run nowhere: no node has room for them; they"
                    " wait for one", len(stranded))
        self.stranded += len(stranded)
        results = await asyncio.gather(*(self.handover.strand(i) for i in stranded), return_exceptions=True)
        for session_id, result in zip(stranded, results, strict=True):
            if isinstance(result, BaseException):
                log.error("marking %s as running nowhere failed: %s", session_id, result)
                with contextlib.suppress(Exception):
                    await self.leases.release(session_id)

    async def _rebalance(self, load: Load) -> None:
        """Hand over a few sessions (``rebalance_rate`` a second) while this node runs more
        than its share and another node has room below its own: a node that joins fills up
        gradually, each move a drain of one session. Looked at once a heartbeat interval: the
        other nodes' counts change no faster."""
        self._rebalance_after = time.monotonic() + HEARTBEAT_INTERVAL
        excess = load.excess()
        if excess <= 0:
            return
        self._rebalance_credit = min(self._rebalance_credit + self.rebalance_rate * HEARTBEAT_INTERVAL,
                                     max(1.0, self.rebalance_rate))
        moves = min(excess, int(self._rebalance_credit))
        if moves <= 0:
            return
        moved = 0
        for session_id in list(self.leases.tokens):
            if moved >= moves:
                break
            if await self.handover.hand_off(session_id):
                moved += 1
        self._rebalance_credit -= moved
        if moved:
            # The others' counts come from their heartbeats: look again once they show the
            # sessions just handed over, or this node would hand over more than its excess.
            self._rebalance_after = time.monotonic() + 2 * HEARTBEAT_INTERVAL + SCAN_INTERVAL
            self.handed_off += moved
            log.info("rebalancing: handed %d sessions over to nodes with more room", moved)

    async def _take_over(self, claimed: dict[str, int]) -> None:
        results = await asyncio.gather(
            *(self.handover.take_over(session_id, len(claimed)) for session_id in claimed),
            return_exceptions=True,
        )
        for session_id, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("taking over %s failed: %s", session_id, result)
                with contextlib.suppress(Exception):
                    await self.leases.release(session_id)

    # ---------------------------------------------------------------- the Locator

    async def locate(self, session_id: str) -> Holder | None:
        if self.leases.holds(session_id):
            return None
        # Not held, or held by a lease this process no longer knows to be good (it woke from a
        # pause): the database says whether another node took it meanwhile.
        return await self.leases.holder(session_id)

    async def runs_nowhere(self, session_id: str) -> bool:
        if self.leases.holds(session_id):
            return False
        return await self.leases.runs_nowhere(session_id)

    async def room_elsewhere(self) -> Holder | None:
        """When this node is full: the live node with the most room (None: this node has room,
        or no node has)."""
        if len(self.leases.tokens) < self.capacity:
            return None
        nodes = await self.table.list(within=STALE_AFTER)
        best = max((n for n in nodes if n.node_id != self.node_id and n.url and n.sessions < n.capacity),
                   key=lambda n: n.capacity - n.sessions, default=None)
        return Holder(node_id=best.node_id, url=best.url) if best is not None else None

    @property
    def secret(self) -> str:
        if self.identity is None:
            raise RuntimeError("the node has not joined its cluster yet")
        return self.identity.secret

    async def nodes(self) -> list[NodeInfo]:
        return await self.table.list(within=3 * self.lease_ttl)
