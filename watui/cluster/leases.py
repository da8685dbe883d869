"""Which node runs which session: leases with fencing tokens, in PostgreSQL.

A node runs a session only while it holds the session's lease: a row in ``leases`` naming the
node, the process (*instance*, see :mod:`watui.cluster.nodes`) that holds it, a fencing token
and an expiry. Renewals and releases match the instance and the token, never the node id
alone: a second process started with a live node's id cannot renew or release that node's
leases, and a node restarted after a crash adopts its dead instance's leases at once
(:meth:`Leases.adopt`) instead of waiting for them to expire. The node renews its leases (every third of the TTL); a
lease that is not renewed expires, and another node claims it (:meth:`Leases.claim_orphans`).
Every claim that takes a lease over gets a new **fencing token** from the ``lease_token``
sequence, so tokens only grow and are never given twice, not even after a release. The store
checks the token on every write (:class:`watui.stores.postgres.Fence`; :class:`Leases` is one):
a node that was paused or cut off past its TTL, and whose session was claimed by another node
meanwhile, has its writes refused with :class:`~watui.errors.LeaseLost`.

Every time here is PostgreSQL's ``now()``, never a node's clock, so nodes whose clocks differ
still agree on which leases are live. See docs/cluster.md, "Leases and fencing".
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import asyncpg

from watui.cluster.types import Holder
from watui.errors import Conflict, SessionLimitReached

log = logging.getLogger(__name__)

OWNER_LOCK = 0x6C656173  # "leas": with the owner's hash, the advisory lock of its limit check

LIVE = "expires_at > now()"
RELEASED = "'-infinity'::timestamptz"
"""A released lease's expiry: expired for every transaction, whenever it started, and never
renewed again (a renewal that raced the release cannot bring it back)."""

MINE = "(l.node_id = EXCLUDED.node_id AND l.instance = EXCLUDED.instance)"

CLAIM = f"""
INSERT INTO leases AS l (session_id, owner, node_id, instance, token, expires_at)
VALUES ($1, $2, $3, $5, nextval('lease_token'), now() + $4 * interval '1 second')
ON CONFLICT (session_id) DO UPDATE
SET owner = EXCLUDED.owner,
    node_id = EXCLUDED.node_id,
    instance = EXCLUDED.instance,
    token = CASE WHEN {MINE} AND l.{LIVE} THEN l.token ELSE EXCLUDED.token END,
    expires_at = EXCLUDED.expires_at
WHERE {MINE} OR l.expires_at <= now()
RETURNING token
"""
"""Take the lease unless another node (or another instance of this one) holds a live one.
This instance's own live lease keeps its token (a renewal); anything else (no row, expired, released) gets a new one. ``ON CONFLICT``
locks the row, so of two nodes claiming at once the second waits, sees the first's live lease
and gets no row back."""

RENEW = f"""
UPDATE leases AS l SET expires_at = now() + $2 * interval '1 second'
FROM unnest($3::text[], $4::bigint[]) AS mine(session_id, token)
WHERE l.session_id = mine.session_id AND l.token = mine.token AND l.node_id = $1
  AND l.instance = $5 AND l.expires_at > {RELEASED}
RETURNING l.session_id
"""
"""Renew every lease this instance holds, by token: a row that names another node, instance or
token was taken over (released ones stay released)."""

ADD_MISSING = """
INSERT INTO leases(session_id, owner, node_id, token, expires_at)
SELECT s.id, s.owner, '', 0, '-infinity'::timestamptz FROM sessions s
WHERE s.wants_node AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.session_id = s.id)
ORDER BY s.id
ON CONFLICT (session_id) DO NOTHING
"""
"""A lapsed lease row (node '' and token 0: nobody ever held it) for each session that wants a
node and has none, so that :data:`CLAIM_ORPHANS` can lock rows to split the work. In id order,
so two nodes adding the same rows at once wait for each other instead of deadlocking."""

CLAIM_ORPHANS = """
WITH orphans AS (
    SELECT l.session_id, s.owner FROM leases l JOIN sessions s ON s.id = l.session_id
    WHERE s.wants_node AND l.expires_at <= now() AND ($5 = false OR s.doc::jsonb ->> 'node_id' IS NOT NULL)
    ORDER BY l.expires_at, l.session_id
    LIMIT $3
    FOR UPDATE OF l SKIP LOCKED
)
UPDATE leases AS l
SET owner = o.owner, node_id = $1, instance = $4, token = nextval('lease_token'),
    expires_at = now() + $2 * interval '1 second'
FROM orphans o WHERE l.session_id = o.session_id
RETURNING l.session_id, l.token
"""
"""Claim up to ``$3`` sessions that want a node and have no live lease. ``SKIP LOCKED``: nodes
scanning at once lock different rows, so each takes its own share instead of queueing behind
the others. Only lease rows are locked (never ``sessions``), in the same order a fenced write
takes them, so a claim and a write cannot deadlock. With ``$5``, only *stranded* ones: their
snapshot still names the node that ran them (they look running, and run nowhere)."""

SCAN = f"""
SELECT
  (SELECT count(*) FROM sessions s LEFT JOIN leases l ON l.session_id = s.id
   WHERE s.wants_node AND (l.session_id IS NULL OR l.expires_at <= now())),
  (SELECT extract(epoch FROM min(l.expires_at) - now())::float8
   FROM nodes n JOIN leases l ON l.node_id = n.node_id AND l.{LIVE}
   WHERE n.node_id <> $1 AND n.heartbeat_at < now() - $2 * interval '1 second')
"""
"""Sessions waiting for a node (the takeovers' share is computed from it), and the seconds until
the first live lease of another node that missed a heartbeat lapses (NULL: none)."""

ADOPT = """
WITH theirs AS (
    SELECT l.session_id FROM leases l JOIN sessions s ON s.id = l.session_id
    WHERE s.wants_node AND l.node_id = $1 AND l.instance <> $2 AND l.expires_at > now()
    ORDER BY l.session_id
    FOR UPDATE OF l
)
UPDATE leases AS l
SET instance = $2, token = nextval('lease_token'), expires_at = now() + $3 * interval '1 second'
FROM theirs t WHERE l.session_id = t.session_id
RETURNING l.session_id, l.token
"""
"""Take over the live leases that other instances of this node id still hold, with new tokens.
Run once a restarted node found its previous instance's heartbeat stale (it is dead): its
sessions need not wait for their leases to expire. Rows locked in session-id order, as a
fenced write locks them."""


@dataclass(frozen=True, slots=True)
class Orphans:
    """What one look for orphans found (:meth:`Leases.scan`)."""

    count: int
    """Sessions that want a node and have no live lease now."""
    next_lapse: float | None
    """Seconds until the first live lease of a node that missed a heartbeat lapses: if that
    node died, its sessions are orphans then (None: every other node beats on time)."""


class LeaseHeld(Conflict):
    """Another node holds a live lease on the session: it runs there (route the call to it)."""

    def __init__(self, session_id: str, node_id: str | None) -> None:
        where = f"node {node_id!r}" if node_id is not None else "another node"
        super().__init__(
            f"Session {session_id!r} runs on {where}",
            details={"session_id": session_id, "node_id": node_id},
        )
        self.session_id = session_id
        self.node_id = node_id


class Leases:
    """This node's leases. One per node; every method is one short transaction."""

    def __init__(self, pool: asyncpg.Pool, node_id: str, ttl: float, *, instance: str | None = None) -> None:
        if not node_id:
            raise ValueError("node_id must not be blank")
        self.pool = pool
        self.node_id = node_id
        self.instance = instance or secrets.token_hex(8)
        """This process (see :func:`watui.cluster.nodes.new_instance`)."""
        self.ttl = ttl
        self.tokens: dict[str, int] = {}
        """The sessions this node holds, and its fencing token for each."""
        self.valid_until: dict[str, float] = {}
        """Monotonic time until which this process knows its lease on each session holds:
        the start of the statement that last claimed or renewed it, plus the TTL. A process
        that was paused (SIGSTOP, a long GC) finds it passed when it wakes, before its next
        renewal tells it whether another node took the session meanwhile."""

    def holds(self, session_id: str) -> bool:
        """This process holds the lease on ``session_id`` now, by its own clock: it may act
        for the session (call its engine). A lapsed hold may still be renewed, but until then
        nothing is done that cannot be taken back."""
        return session_id in self.tokens and time.monotonic() < self.valid_until.get(session_id, 0.0)

    def _held(self, claimed: dict[str, int], since: float) -> None:
        self.tokens.update(claimed)
        for session_id in claimed:
            self.valid_until[session_id] = since + self.ttl

    def token(self, session_id: str) -> int | None:
        """This node's fencing token for ``session_id`` (the store's :class:`Fence` question)."""
        return self.tokens.get(session_id)

    async def claim(self, session_id: str, owner: str, *, limit: int | None = None) -> int:
        """Take the session's lease for this node and return its fencing token.

        Raises :class:`LeaseHeld` when another node holds a live lease. With ``limit``, the
        owner may hold at most ``limit`` live leases across the cluster (this one included):
        the count and the claim run in one transaction under a per-owner advisory lock, so
        concurrent claims on any nodes cannot overshoot; over it, :class:`SessionLimitReached`.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if limit is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", OWNER_LOCK, owner)
                others = await conn.fetchval(
                    f"SELECT COUNT(*) FROM leases WHERE owner = $1 AND session_id <> $2 AND {LIVE}",
                    owner, session_id)
                if others >= limit:
                    raise SessionLimitReached(
                        f"Owner {owner!r} already has {limit} active sessions (the limit); stop one first",
                        details={"owner": owner, "limit": limit},
                    )
            since = time.monotonic()
            token = await conn.fetchval(CLAIM, session_id, owner, self.node_id, self.ttl, self.instance)
            if token is None:
                holder = await conn.fetchval(
                    f"SELECT node_id FROM leases WHERE session_id = $1 AND {LIVE}", session_id)
        if token is None:
            self.tokens.pop(session_id, None)
            self.valid_until.pop(session_id, None)
            raise LeaseHeld(session_id, holder)
        self._held({session_id: int(token)}, since)
        return int(token)

    async def release(self, session_id: str) -> None:
        """Give the session's lease up now (it stops running here); its token is never reused."""
        token = self.tokens.pop(session_id, None)
        self.valid_until.pop(session_id, None)
        await self.pool.execute(
            f"UPDATE leases SET expires_at = {RELEASED}"
            " WHERE session_id = $1 AND node_id = $2 AND instance = $4 AND ($3::bigint IS NULL OR token = $3)",
            session_id, self.node_id, token, self.instance)

    async def release_all(self) -> None:
        """Give up every lease this instance holds (a drain or shutdown hands them all over);
        never another process's, even one started with the same node id."""
        held, self.tokens = self.tokens, {}
        self.valid_until = {}
        await self.pool.execute(
            f"UPDATE leases SET expires_at = {RELEASED}"
            f" WHERE node_id = $1 AND instance = $2 AND expires_at > {RELEASED}",
            self.node_id, self.instance)
        log.info("released %d leases", len(held))

    async def renew(self) -> set[str]:
        """Renew every lease this node holds, in one statement. Returns the sessions it lost
        (another node took them over, or they were released), dropped from :attr:`tokens`:
        the node must stop running them."""
        held = dict(self.tokens)
        if not held:
            return set()
        since = time.monotonic()
        async with self.pool.acquire() as conn, conn.transaction():
            # Planned for the array's real length. asyncpg prepares its statements, and after
            # five runs PostgreSQL may keep a generic plan, which guesses ten elements and
            # scans the array once per lease: 0.23 s for 1,000 leases instead of 0.01 s, and
            # quadratic, so a node with 10,000 could not renew within its TTL.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await conn.fetch(
                RENEW, self.node_id, self.ttl, list(held), list(held.values()), self.instance)
        renewed = {row[0] for row in rows}
        for session_id in renewed:
            if self.tokens.get(session_id) == held[session_id]:
                self.valid_until[session_id] = since + self.ttl
        lost = set(held) - renewed
        for session_id in lost:
            if self.tokens.get(session_id) == held[session_id]:  # not re-claimed meanwhile
                del self.tokens[session_id]
                self.valid_until.pop(session_id, None)
        if lost:
            log.warning("lost the leases of %d sessions: %s", len(lost), sorted(lost))
        return lost

    async def claim_orphans(self, limit: int, *, stranded: bool = False) -> dict[str, int]:
        """Claim up to ``limit`` sessions that want a node (``sessions.wants_node``) but have
        no live lease: their node died, or nobody took them yet. Returns session id -> token;
        concurrent nodes get disjoint sets. ``stranded``: only those whose snapshot still
        names a node (to say they run nowhere, when no node has room for them)."""
        if limit <= 0:
            return {}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(ADD_MISSING)
            since = time.monotonic()
            rows = await conn.fetch(CLAIM_ORPHANS, self.node_id, self.ttl, limit, self.instance, stranded)
        claimed = {row[0]: int(row[1]) for row in rows}
        self._held(claimed, since)
        return claimed

    async def scan(self, suspect_after: float) -> Orphans:
        """Sessions that want a node and have no live lease, and when the next ones may
        appear: the first live lease of another node whose heartbeat is older than
        ``suspect_after`` seconds (it may be dead) lapses then."""
        row = await self.pool.fetchrow(SCAN, self.node_id, suspect_after)
        return Orphans(count=int(row[0]), next_lapse=None if row[1] is None else float(row[1]))

    async def adopt(self) -> dict[str, int]:
        """Take over, with new tokens, the live leases other instances of this node id hold
        (call it only once :meth:`watui.cluster.nodes.Nodes.join` found them dead). Returns
        session id -> token."""
        since = time.monotonic()
        rows = await self.pool.fetch(ADOPT, self.node_id, self.instance, self.ttl)
        adopted = {row[0]: int(row[1]) for row in rows}
        self._held(adopted, since)
        return adopted

    async def holder(self, session_id: str) -> Holder | None:
        """The *other* node holding a live lease on the session, with its URL from ``nodes``
        (empty if that node has no row there); None when this node or nobody holds it."""
        row = await self.pool.fetchrow(
            "SELECT l.node_id, coalesce(n.url, '') FROM leases l LEFT JOIN nodes n USING (node_id)"
            f" WHERE l.session_id = $1 AND l.{LIVE} AND l.node_id <> $2",
            session_id, self.node_id)
        return Holder(node_id=row[0], url=row[1]) if row is not None else None

    async def runs_nowhere(self, session_id: str) -> bool:
        """The session wants a node (it should be running) and no node holds a live lease on
        it: its node died and nobody has taken it over yet, or no node has room for it."""
        return bool(await self.pool.fetchval(
            "SELECT s.wants_node AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.session_id = s.id"
            f" AND l.{LIVE}) FROM sessions s WHERE s.id = $1", session_id))

    async def count_live(self, owner: str | None = None) -> int:
        """Live leases in the whole cluster, or of one owner."""
        if owner is None:
            return int(await self.pool.fetchval(f"SELECT COUNT(*) FROM leases WHERE {LIVE}"))
        return int(await self.pool.fetchval(
            f"SELECT COUNT(*) FROM leases WHERE owner = $1 AND {LIVE}", owner))

    async def count_by_node(self) -> dict[str, int]:
        """Live leases per node (``GET /v1/cluster``'s per-node session counts)."""
        rows = await self.pool.fetch(f"SELECT node_id, COUNT(*) FROM leases WHERE {LIVE} GROUP BY node_id")
        return {row[0]: int(row[1]) for row in rows}

    async def nodes_of(self, session_ids: list[str] | None = None) -> dict[str, str]:
        """session id -> the node holding its live lease (for a session's ``node_id``), for
        the given sessions or all of them; sessions nobody runs are absent."""
        if session_ids is None:
            rows = await self.pool.fetch(f"SELECT session_id, node_id FROM leases WHERE {LIVE}")
        else:
            rows = await self.pool.fetch(
                f"SELECT session_id, node_id FROM leases WHERE session_id = ANY($1::text[]) AND {LIVE}",
                session_ids)
        return {row[0]: row[1] for row in rows}
