"""Leases and fencing on a real PostgreSQL: one lease per session, expiry and takeover with a
greater token, renewal, the cluster-wide per-owner limit, orphans split between nodes, and the
store refusing the writes of a node that lost its lease."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from watui.cluster.leases import LeaseHeld, Leases
from watui.cluster.nodes import Nodes
from watui.cluster.types import Holder
from watui.errors import LeaseLost, SessionLimitReached
from watui.machine import EventType, Status, wants_node
from watui.models import NewEvent, Session, utcnow
from watui.stores.postgres import PostgresStore
from watui.stores.postgres_schema import MIGRATIONS

OpenNodes = Callable[..., Awaitable[list[PostgresStore]]]

TTL = 0.5
"""Short enough to let a lease lapse in a test; waits below are TTL plus a margin."""

_ids = itertools.count(1)


def session(owner: str = "alice", status: Status = Status.CONNECTED, *, autostart: bool = False) -> Session:
    now = utcnow()
    n = next(_ids)
    return Session(id=f"s{n}", name=f"s{n}", owner=owner, status=status, autostart=autostart,
                   created_at=now, updated_at=now)


def event(s: Session, text: str = "") -> NewEvent:
    return NewEvent(type=EventType.STATUS, session_id=s.id, owner=s.owner, payload={"note": text})


async def lapse() -> None:
    await asyncio.sleep(TTL + 0.3)


async def test_a_lease_is_held_by_one_node_at_a_time(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    await Nodes(a.pool, "A", "http://a:1", 10).register()
    la, lb = Leases(a.pool, "A", 10), Leases(b.pool, "B", 10)

    token = await la.claim("s", "alice")
    with pytest.raises(LeaseHeld) as held:
        await lb.claim("s", "alice")
    assert held.value.node_id == "A" and held.value.details == {"session_id": "s", "node_id": "A"}
    assert lb.tokens == {}
    assert await la.claim("s", "alice") == token, "re-claiming its own live lease keeps the token"
    assert la.tokens == {"s": token}
    assert await lb.holder("s") == Holder(node_id="A", url="http://a:1")
    assert await la.holder("s") is None, "holder() names other nodes only"
    assert await la.nodes_of() == {"s": "A"} and await lb.count_by_node() == {"A": 1}


async def test_an_expired_lease_is_taken_over_with_a_greater_token(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", TTL), Leases(b.pool, "B", TTL)
    first = await la.claim("s", "alice")
    await lapse()
    assert await lb.holder("s") is None
    second = await lb.claim("s", "alice")
    assert second > first
    with pytest.raises(LeaseHeld):
        await la.claim("s", "alice")
    assert "s" not in la.tokens


async def test_renew_keeps_the_leases_still_held_and_reports_the_lost_ones(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", TTL), Leases(b.pool, "B", TTL)
    t1, t2 = await la.claim("s1", "alice"), await la.claim("s2", "alice")
    for _ in range(3):  # renewed past its TTL several times over: still A's
        await asyncio.sleep(TTL / 2)
        assert await la.renew() == set()
    with pytest.raises(LeaseHeld):
        await lb.claim("s1", "alice")

    await lapse()  # both lapse; B takes s2 only
    await lb.claim("s2", "alice")
    assert await la.renew() == {"s2"}
    assert la.tokens == {"s1": t1}, "expired but claimed by nobody: renewed, same token"
    assert t2 not in la.tokens.values()
    with pytest.raises(LeaseHeld):
        await lb.claim("s1", "alice")


async def test_release_hands_the_session_over_and_never_gives_a_token_twice(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", 10), Leases(b.pool, "B", 10)
    first = await la.claim("s", "alice")
    await la.release("s")
    assert la.tokens == {} and await la.count_live() == 0
    second = await lb.claim("s", "alice")
    await lb.release("s")
    third = await la.claim("s", "alice")
    assert first < second < third

    await la.claim("t", "alice")
    await la.release_all()
    assert la.tokens == {} and await la.renew() == set()
    assert await lb.claim("s", "alice") > third
    assert await lb.claim("t", "alice") > third


async def test_fencing_refuses_the_write_of_a_node_that_lost_the_lease_and_only_that(
    open_nodes: OpenNodes,
) -> None:
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", TTL), Leases(b.pool, "B", TTL)
    a.fencing, b.fencing = la, lb
    s, t = session(), session()
    await a.write(sessions=[s, t], events=[event(s, "created"), event(t, "created")])
    await la.claim(s.id, s.owner)
    await la.claim(t.id, t.owner)

    await lapse()  # A was paused past its TTL; B claims s (t lapsed too, but nobody took it)
    await lb.claim(s.id, s.owner)
    before = await a.max_event_id()
    commits = a.commits
    lost, kept = await asyncio.gather(
        a.write(events=[event(s, "stale")], sessions=[s]),
        a.write(events=[event(t, "fresh")], sessions=[t]),
        return_exceptions=True,
    )
    assert a.commits == commits + 1, "both writes went in one transaction"
    assert isinstance(lost, LeaseLost) and lost.session_id == s.id
    assert not isinstance(kept, BaseException)
    assert [e.id for e in kept.events] == [before + 1], "the refused write took no event id"

    written = await b.write(events=[event(s, "on B")])
    assert written.events[0].id == before + 2
    notes = [e.payload["note"] for e in await b.read_events(session_id=s.id)]
    assert notes == ["created", "on B"]


async def test_a_node_with_no_token_cannot_write_a_session_another_node_holds(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", 10), Leases(b.pool, "B", 10)
    a.fencing = la
    s = session()
    await a.write(sessions=[s])  # nobody holds it: A may create it
    await lb.claim(s.id, s.owner)
    for write in ({"sessions": [s]}, {"events": [event(s)]}, {"deleted": [s.id]}):
        with pytest.raises(LeaseLost):
            await a.write(**write)  # type: ignore[arg-type]
    await lb.release(s.id)
    await a.write(events=[event(s, "after release")], sessions=[s])
    assert [e.payload["note"] for e in await a.read_events(session_id=s.id)] == ["after release"]


async def test_without_fencing_the_store_writes_as_before(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    s = session()
    await Leases(b.pool, "B", 10).claim(s.id, s.owner)
    assert a.fencing is None
    written = await a.write(events=[event(s)], sessions=[s])
    assert len(written.events) == 1


async def test_fifty_concurrent_claims_on_three_nodes_never_exceed_the_owner_limit(
    open_nodes: OpenNodes,
) -> None:
    nodes = await open_nodes(3)
    leases = [Leases(store.pool, f"N{i}", 10) for i, store in enumerate(nodes)]
    outcomes = await asyncio.gather(
        *(leases[i % 3].claim(f"s{i}", "alice", limit=5) for i in range(50)), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, SessionLimitReached)]
    assert len(won) == 5 and len(refused) == 45, outcomes
    assert refused[0].details == {"owner": "alice", "limit": 5}
    assert "already has 5 active sessions" in refused[0].message
    assert await leases[0].count_live("alice") == 5

    holder = next(lease for lease in leases if lease.tokens)
    mine = next(iter(holder.tokens))
    assert await holder.claim(mine, "alice", limit=5) == holder.tokens[mine], "its own slot"
    await leases[1].claim("b1", "bob", limit=5)  # another owner has its own limit
    await holder.release(mine)
    await leases[2].claim("s-late", "alice", limit=5)  # a released slot is free again


async def test_orphans_are_split_between_nodes_without_overlap(open_nodes: OpenNodes) -> None:
    a, b, c = await open_nodes(3)
    wanted = [session() for _ in range(10)]
    wanted += [session(status=Status.DISCONNECTED, autostart=True) for _ in range(2)]
    unwanted = [session(status=Status.STOPPED), session(status=Status.DISCONNECTED),
                session(status=Status.FAILED, autostart=True)]
    running_on_c = session()
    await a.write(sessions=[*wanted, *unwanted, running_on_c])
    lc = Leases(c.pool, "C", 10)
    await lc.claim(running_on_c.id, running_on_c.owner)
    dead = Leases(c.pool, "dead", TTL)
    dead_token = await dead.claim(wanted[0].id, wanted[0].owner)  # a node that then dies
    await lapse()

    la, lb = Leases(a.pool, "A", 10), Leases(b.pool, "B", 10)
    got_a, got_b = await asyncio.gather(la.claim_orphans(8), lb.claim_orphans(8))
    assert len(got_a) <= 8 and len(got_b) <= 8
    assert not set(got_a) & set(got_b)
    assert set(got_a) | set(got_b) == {s.id for s in wanted}
    assert {**got_a, **got_b}[wanted[0].id] > dead_token
    assert la.tokens == got_a and lb.tokens == got_b
    assert await la.claim_orphans(8) == {} and await lb.claim_orphans(8) == {}

    # A session that stops no longer wants a node: the store's upsert keeps the column.
    stopped = wanted[1].model_copy(update={"status": Status.STOPPED})
    await a.write(sessions=[stopped])
    owner = la if stopped.id in la.tokens else lb
    await owner.release(stopped.id)
    assert await lc.claim_orphans(8) == {}


async def test_a_look_for_orphans_counts_them_and_times_the_first_lapse_of_a_node_that_missed_a_beat(
    open_nodes: OpenNodes,
) -> None:
    a, b = await open_nodes(2)
    await Nodes(a.pool, "A", "http://a:1", 10).register()
    await Nodes(b.pool, "B", "http://b:1", 10).register()
    la, lb = Leases(a.pool, "A", 10), Leases(b.pool, "B", 10)
    s, t, waiting = session(), session(), session()
    await a.write(sessions=[s, t, waiting])
    await la.claim(s.id, s.owner)
    await lb.claim(t.id, t.owner)

    found = await la.scan(suspect_after=1.5)
    assert found.count == 1 and found.next_lapse is None, "every node beats on time: nothing to time"

    await a.pool.execute("UPDATE nodes SET heartbeat_at = now() - interval '2 seconds' WHERE node_id = 'B'")
    found = await la.scan(suspect_after=1.5)
    assert found.count == 1
    assert found.next_lapse is not None and 8 < found.next_lapse <= 10, "B's lease lapses within its TTL"
    assert (await lb.scan(suspect_after=1.5)).next_lapse is None, "a node never suspects itself"
    assert (await la.scan(suspect_after=3.0)).next_lapse is None, "a beat 2 s old is on time for 3 s"

    await lb.release(t.id)
    found = await la.scan(suspect_after=1.5)
    assert found.count == 2 and found.next_lapse is None, "a released lease is an orphan, not a lapse to come"


async def held_by_a(store: PostgresStore, count: int) -> Leases:
    """``count`` live lease rows (a minute left) of node A's instance i1, and its :class:`Leases`
    holding them, written straight into the table."""
    ids = [f"r{i}" for i in range(count)]
    await store.pool.execute(
        "INSERT INTO leases(session_id, owner, node_id, instance, token, expires_at)"
        " SELECT id, 'alice', 'A', 'i1', n, now() + interval '1 minute'"
        " FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)", ids)
    leases = Leases(store.pool, "A", 60, instance="i1")
    leases.tokens = {sid: n for n, sid in enumerate(ids, start=1)}
    return leases


async def test_a_renewal_is_planned_for_the_leases_it_carries_never_with_a_generic_plan(
    open_nodes: OpenNodes,
) -> None:
    """The renewal joins the lease rows with the arrays of this node's sessions and tokens.
    asyncpg prepares its statements, and after five runs PostgreSQL may switch to a generic
    plan, which guesses ten array elements and scans the array once per lease (0.23 s for 1,000
    leases instead of 0.01 s, quadratic): every renewal must be planned for its own arrays."""
    (a,) = await open_nodes(1, pool_size=1)
    await a.write(sessions=[session()])  # the writer keeps one of the pool's two connections
    leases = await held_by_a(a, 1000)
    for _ in range(10):
        assert await leases.renew() == set()
    plans = await a.pool.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1",
        "%FROM unnest($3::text[], $4::bigint[])%")
    assert plans is not None, "the renewal ran on the one connection the pool has left"
    assert plans["generic_plans"] == 0 and plans["custom_plans"] >= 10


async def test_renewals_rewrite_lease_rows_in_place_and_leave_the_indexes_alone(open_nodes: OpenNodes) -> None:
    """A renewal changes only ``expires_at``, which no index covers: PostgreSQL makes each a HOT
    update (the new version on the same page, no index entry). Were any index on it, every
    renewal would add an entry per lease to every index: 20 renewals of 500 leases, 30,000."""
    (a,) = await open_nodes(1)
    leases = await held_by_a(a, 500)
    sizes = ("SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
             " WHERE indrelid = 'leases'::regclass ORDER BY 1")
    before = dict(await a.fetchall(sizes))
    assert set(before) >= {"leases_pkey", "leases_owner", "leases_node"}
    for _ in range(20):
        assert await leases.renew() == set()
    after = dict(await a.fetchall(sizes))
    grown = {name: after[name] - before[name] for name in before}
    assert all(size <= 8192 for size in grown.values()), f"bytes each index grew by: {grown}"
    live = await a.pool.fetchval("SELECT count(*) FROM leases WHERE expires_at > now() + interval '50 seconds'")
    assert live == 500


async def test_the_migration_backfills_which_sessions_want_a_node(open_nodes: OpenNodes) -> None:
    (store,) = await open_nodes(1)
    rows = {s.id: s for s in (session(), session(status=Status.STOPPED),
                              session(status=Status.DISCONNECTED, autostart=True))}
    await store.write(sessions=list(rows.values()))
    await store.pool.execute("UPDATE sessions SET wants_node = NOT wants_node")
    backfill = next(part for part in MIGRATIONS[1].split(";") if "UPDATE sessions" in part)
    await store.pool.execute(backfill)
    got = {r[0]: r[1] for r in await store.fetchall("SELECT id, wants_node FROM sessions")}
    assert got == {i: wants_node(s.status, s.autostart) for i, s in rows.items()}
    assert sorted(got.values()) == [False, True, True]


async def test_a_claim_waits_for_a_fenced_write_in_flight(open_nodes: OpenNodes) -> None:
    """The check locks the lease rows ``FOR SHARE`` until the write commits: a claim cannot
    commit between a write's check and its commit (else the old holder's write would land
    after the new holder took over)."""
    a, b = await open_nodes(2)
    la, lb = Leases(a.pool, "A", TTL), Leases(b.pool, "B", TTL)
    a.fencing = la
    s = session()
    await la.claim(s.id, s.owner)
    await lapse()  # lapsed, but nobody claimed it: A may still write
    finished: list[str] = []

    async def slow_write() -> None:
        await a.write(events=[event(s, "last words")], statements=[("SELECT pg_sleep(0.6)", ())])
        finished.append("write")

    async def claim() -> None:
        await asyncio.sleep(0.2)  # the write has passed its check and sleeps in its transaction
        await lb.claim(s.id, s.owner)
        finished.append("claim")

    await asyncio.gather(slow_write(), claim())
    assert finished == ["write", "claim"]


async def test_another_instance_of_the_node_id_cannot_renew_release_or_write_its_leases(
    open_nodes: OpenNodes,
) -> None:
    a, b = await open_nodes(2)
    live, twin = Leases(a.pool, "A", 10), Leases(b.pool, "A", 10)  # one node id, two processes
    a.fencing, b.fencing = live, twin
    s, t = session(), session()
    await a.write(sessions=[s, t])
    tokens = {s.id: await live.claim(s.id, s.owner), t.id: await live.claim(t.id, t.owner)}
    with pytest.raises(LeaseHeld):
        await twin.claim(s.id, s.owner)
    await twin.release(s.id)
    await twin.release_all()  # the shutdown of a second process started with the same id
    twin.tokens = dict(tokens)  # even knowing the tokens, the instance does not match
    assert await twin.renew() == {s.id, t.id}
    with pytest.raises(LeaseLost):
        await b.write(events=[event(s, "twin")])
    assert await live.count_live() == 2 and await live.renew() == set()
    assert live.tokens == tokens
    await a.write(events=[event(s, "live")])


async def test_a_restarted_instance_adopts_the_dead_instances_live_leases_at_once(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    dead, restarted = Leases(a.pool, "A", 10), Leases(b.pool, "A", 10)
    a.fencing, b.fencing = dead, restarted
    s, t, u = session(), session(), session(status=Status.STOPPED)
    await a.write(sessions=[s, t, u])
    old = {s.id: await dead.claim(s.id, s.owner), t.id: await dead.claim(t.id, t.owner)}
    other = Leases(a.pool, "B", 10)
    await other.claim(u.id, u.owner)  # another node's lease is never adopted
    adopted = await restarted.adopt()
    assert set(adopted) == {s.id, t.id} and all(adopted[i] > old[i] for i in old)
    assert restarted.tokens == adopted
    assert await restarted.adopt() == {}, "nothing left to adopt"
    # Should the old instance still be alive somewhere (paused), it has lost them.
    assert await dead.renew() == {s.id, t.id}
    with pytest.raises(LeaseLost):
        await a.write(events=[event(s, "stale")])
    await b.write(events=[event(s, "resumed")])
    assert (await other.nodes_of([s.id, t.id, u.id])) == {s.id: "A", t.id: "A", u.id: "B"}


@pytest.mark.parametrize("stalled_transaction_timeout", [0.5, None], ids=["timeout", "no-timeout"])
async def test_a_node_paused_in_the_middle_of_a_commit_does_not_stop_the_others(
    open_nodes: OpenNodes, stalled_transaction_timeout: float | None,
) -> None:
    """A node stopped between the statements of a commit (SIGSTOP, a frozen VM) holds the
    event counter's row lock and its session's lease row: with the timeout cluster nodes set,
    PostgreSQL ends that transaction and the others write and take over; without it they
    would wait for as long as the node sleeps."""
    (a,) = await open_nodes(1, stalled_transaction_timeout=stalled_transaction_timeout)
    (b,) = await open_nodes(1)
    la, lb = Leases(a.pool, "A", TTL), Leases(b.pool, "B", TTL)
    a.fencing, b.fencing = la, lb
    s, other = session(), session()
    await a.write(sessions=[s, other])
    await la.claim(s.id, s.owner)
    paused = await a.pool.acquire()
    tx = paused.transaction()
    await tx.start()
    # What a commit does first: take the counter's lock, then lock its sessions' lease rows.
    await paused.execute("UPDATE event_seq SET last = last")
    await paused.execute("SELECT 1 FROM leases WHERE session_id = $1 FOR SHARE", s.id)
    await lapse()

    async def carry_on() -> None:
        await b.write(events=[event(other, "another node writes")])
        assert s.id in await lb.claim_orphans(10)
        await b.write(events=[event(s, "taken over")])

    try:
        if stalled_transaction_timeout is None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(carry_on(), 2.0)
        else:
            await asyncio.wait_for(carry_on(), 30.0)
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
                await paused.execute("SELECT 1")  # the server ended the paused transaction
    finally:
        with contextlib.suppress(Exception):
            await tx.rollback()
        await a.pool.release(paused)


async def test_a_process_that_woke_past_its_lease_acts_for_no_session_until_it_renews(
    open_nodes: OpenNodes,
) -> None:
    """Paused past the TTL (its clock says so when it wakes), a node calls no engine for the
    session, whoever holds it now, until a renewal tells it the lease is still its own."""
    from watui.errors import NodeUnavailable
    from watui.manager.placement import LeasePlacement

    (a,) = await open_nodes(1)
    leases = Leases(a.pool, "A", TTL)
    placement = LeasePlacement(leases, max_active_per_owner=10, capacity=10)
    s = session()
    await a.write(sessions=[s])
    await leases.claim(s.id, s.owner)
    assert leases.holds(s.id)
    placement.check(s.id)
    await lapse()  # the pause: nobody claimed it, but this process cannot know that yet
    assert not leases.holds(s.id) and s.id in leases.tokens
    with pytest.raises(NodeUnavailable):
        placement.check(s.id)
    assert await leases.renew() == set()  # still its own: renewed, and it may act again
    assert leases.holds(s.id)
    placement.check(s.id)
