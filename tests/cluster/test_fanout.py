"""Fan-out between nodes: every node's feed delivers every event of the cluster once, in id
order, and the other nodes' session snapshots — through Redis, and from PostgreSQL when Redis
misses something or is away. Real PostgreSQL (a fresh database per run, a schema per test) and
real Redis (a stream per test; a private ``redis-server`` for the restart test)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from watui.bus import EventBus
from watui.cluster.fanout import ClusterFeed, decode, encode
from watui.machine import EventType
from watui.models import Event, NewEvent, Session
from watui.stores.postgres import Committed, PostgresStore

from .cluster_helpers import RedisServer, free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def session(sid: str, owner: str, version: int) -> Session:
    now = datetime.now(UTC)
    return Session(id=sid, name=sid, owner=owner, description=f"v{version}", created_at=now, updated_at=now)


def event(sid: str, owner: str, i: int, kind: EventType = EventType.STATUS) -> NewEvent:
    return NewEvent(type=kind, session_id=sid, owner=owner, payload={"i": i})


@dataclass
class Seen:
    """What one feed handed out: its events, and the mirror its snapshots build."""

    events: list[Event] = field(default_factory=list)
    mirror: dict[str, Session] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    deletes: int = 0

    def on_events(self, events: list[Event]) -> None:
        self.events.extend(events)

    def on_sessions(self, sessions: list[Session], deleted: list[str]) -> None:
        for s in sessions:
            self.mirror[s.id] = s
            self.deleted.discard(s.id)
        self.deletes += len(deleted)
        for sid in deleted:
            self.mirror.pop(sid, None)
            self.deleted.add(sid)


Node = tuple[PostgresStore, ClusterFeed, Seen]
StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
def stream() -> Iterator[str]:
    """A stream of this test's own on the shared Redis, deleted after it."""
    name = "watui:test:" + secrets.token_hex(6)
    yield name

    async def drop() -> None:
        client = aioredis.Redis.from_url(SHARED_REDIS)
        try:
            await client.delete(name)
        finally:
            await client.aclose()

    asyncio.run(drop())


@pytest.fixture
async def start_node(pg_database: str) -> AsyncIterator[StartNode]:
    """``await start_node(name, redis_url, stream)``: one more node (its own pool, its own
    feed) on this test's schema."""
    schema = "t_" + secrets.token_hex(6)
    nodes: list[Node] = []

    async def start(name: str, redis_url: str | None, stream: str = "unused", **options: float) -> Node:
        store = await PostgresStore.open(pg_database, schema=schema)
        feed = ClusterFeed(store, redis_url, name, stream=stream, **options)  # type: ignore[arg-type]
        seen = Seen()
        feed.on_events.append(seen.on_events)
        feed.on_sessions.append(seen.on_sessions)
        await feed.start()
        nodes.append((store, feed, seen))
        return store, feed, seen

    yield start
    for store, feed, _ in nodes:
        await feed.aclose()
        await store.close()


async def until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def write_for(node: str, store: PostgresStore, rounds: int, rng: random.Random) -> None:
    """A node's writes: events with its sessions' snapshots, some deletes, random batch sizes."""
    versions: dict[str, int] = {}
    for r in range(rounds):
        sid = f"{node}-s{rng.randrange(4)}"
        versions[sid] = versions.get(sid, 0) + 1
        n = rng.randint(1, 5)
        if r % 17 == 16:
            await store.write(events=[event(sid, node, r, EventType.DELETED)], deleted=[sid])
            versions.pop(sid)
        elif r % 11 == 10:  # a snapshot without events
            await store.write(sessions=[session(sid, node, versions[sid])])
        else:
            await store.write(events=[event(sid, node, r * 10 + k) for k in range(n)],
                              sessions=[session(sid, node, versions[sid])])
        if rng.random() < 0.3:
            await asyncio.sleep(0)


def assert_exactly_once_in_order(events: list[Event], first: int, last: int) -> None:
    ids = [e.id for e in events]
    assert ids == list(range(first, last + 1)), "gap, duplicate or disorder"


async def assert_mirror_matches_others(store: PostgresStore, seen: Seen, node: str) -> None:
    """The snapshots a node got from the others are the others' sessions as stored now."""
    stored = {s.id: s for s in await store.load_sessions() if s.owner != node}
    mirrored = {sid: s for sid, s in seen.mirror.items() if s.owner != node}
    assert mirrored == stored


async def test_three_nodes_each_deliver_every_event_once_in_order_and_the_others_sessions(
    start_node: StartNode, stream: str
) -> None:
    nodes = [await start_node(name, SHARED_REDIS, stream) for name in ("a", "b", "c")]
    first = nodes[0][1].delivered_id + 1
    rng = random.Random(9)
    await asyncio.gather(*(write_for(name, store, 120, random.Random(rng.random()))
                           for name, (store, _, _) in zip("abc", nodes, strict=True)))
    last = await nodes[0][0].max_event_id()
    for _, feed, _ in nodes:
        await until(lambda feed=feed: feed.delivered_id >= last, what="every event delivered")
    await asyncio.sleep(0.3)  # anything late (a duplicate) would arrive now
    for name, (store, feed, seen) in zip("abc", nodes, strict=True):
        assert_exactly_once_in_order(seen.events, first, last)
        assert feed.events_from_redis > 0 and feed.events_local > 0
        assert feed.events_local + feed.events_from_redis + feed.events_from_pg == last - first + 1
        await assert_mirror_matches_others(store, seen, name)
        assert seen.deletes > 0, "the others' deletes reach this node"


@pytest.mark.parametrize("redis_url", [None, "unreachable"])
async def test_a_node_without_redis_gets_everything_from_postgres(
    start_node: StartNode, stream: str, redis_url: str | None
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0" if redis_url == "unreachable" else None
    writer, _, _ = await start_node("w", SHARED_REDIS, stream)
    _, feed, seen = await start_node("r", url, stream)
    first = feed.delivered_id + 1
    await write_for("w", writer, 60, random.Random(3))
    # Without Redis a snapshot written without an event is seen with the session's next event
    # (the feed reloads the sessions that recovered events touch): give each session one.
    for s in await writer.load_sessions():
        await writer.write(events=[event(s.id, "w", -1)])
    last = await writer.max_event_id()
    await until(lambda: feed.delivered_id >= last, what="catch-up from PostgreSQL")
    await asyncio.sleep(0.3)
    assert_exactly_once_in_order(seen.events, first, last)
    assert not feed.redis_connected and feed.events_from_redis == 0
    assert feed.events_from_pg == last - first + 1
    await assert_mirror_matches_others(writer, seen, "r")


async def test_events_the_log_purged_before_a_node_read_them_are_skipped_not_awaited(
    start_node: StartNode,
) -> None:
    writer, _, _ = await start_node("w", None, poll_interval=5.0, check_interval=5.0)
    _, feed, seen = await start_node("r", None, poll_interval=5.0, check_interval=5.0)
    first = feed.delivered_id + 1
    await writer.write(events=[event("w-x", "w", 0)], sessions=[session("w-x", "w", 1)])
    # Its message events go with the session, before the reader looked.
    await writer.write(events=[event("w-x", "w", i, EventType.MESSAGE) for i in range(3)])
    await writer.write(events=[event("w-x", "w", 9, EventType.DELETED)], deleted=["w-x"])
    await writer.write(events=[event("w-y", "w", 10)], sessions=[session("w-y", "w", 1)])
    last = await writer.max_event_id()
    await feed.catch_up()
    assert feed.delivered_id == last
    ids = [e.id for e in seen.events]
    assert ids == [first, first + 4, first + 5]  # the three message events are gone for good
    assert seen.mirror.keys() == {"w-y"} and "w-x" in seen.deleted


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def test_redis_killed_and_restarted_loses_nothing_and_the_feed_goes_back_to_redis(
    start_node: StartNode, private_redis: RedisServer
) -> None:
    a_store, a_feed, a_seen = await start_node("a", private_redis.url, "commits")
    b_store, b_feed, b_seen = await start_node("b", private_redis.url, "commits")
    first = a_feed.delivered_id + 1
    assert a_feed.redis_connected and b_feed.redis_connected
    stop = asyncio.Event()

    async def keep_writing(name: str, store: PostgresStore) -> None:
        i = 0
        while not stop.is_set():
            sid = f"{name}-s{i % 3}"
            await store.write(events=[event(sid, name, i)], sessions=[session(sid, name, i)])
            i += 1
            await asyncio.sleep(0.01)

    writers = [asyncio.create_task(keep_writing("a", a_store)), asyncio.create_task(keep_writing("b", b_store))]
    try:
        await until(lambda: b_feed.events_from_redis > 10, what="events through Redis")
        private_redis.stop()
        await until(lambda: not b_feed.redis_connected, what="the feed to notice Redis is gone")
        from_pg = b_feed.events_from_pg
        await until(lambda: b_feed.events_from_pg > from_pg + 10, what="events from PostgreSQL while Redis is down")
        private_redis.start()
        await until(lambda: b_feed.redis_connected and a_feed.redis_connected, what="the feeds to rejoin Redis")
        from_redis = b_feed.events_from_redis
        await until(lambda: b_feed.events_from_redis > from_redis + 10, what="Redis deliveries to resume")
    finally:
        stop.set()
        await asyncio.gather(*writers)
    last = await a_store.max_event_id()
    for feed in (a_feed, b_feed):
        await until(lambda feed=feed: feed.delivered_id >= last, what="every event delivered")
    # Every write here has events, and a commit's snapshots are handed out before its events:
    # once the last event is delivered, so is every snapshot (nothing to wait for).
    for name, store, seen in (("a", a_store, a_seen), ("b", b_store, b_seen)):
        assert_exactly_once_in_order(seen.events, first, last)
        await assert_mirror_matches_others(store, seen, name)


async def test_a_bus_following_its_feed_sees_other_nodes_and_resumes_across_nodes_with_no_gap(
    start_node: StartNode, stream: str
) -> None:
    a_store, _, _ = await start_node("a", SHARED_REDIS, stream)
    b_store, b_feed, _ = await start_node("b", SHARED_REDIS, stream)
    c_store, c_feed, _ = await start_node("c", SHARED_REDIS, stream)
    b_bus, c_bus = EventBus(b_store), EventBus(c_store)
    b_bus.follow(b_feed)
    c_bus.follow(c_feed)
    assert b_bus.last_id == b_feed.delivered_id
    first = b_bus.last_id + 1
    live_b = b_bus.subscribe()
    small = b_bus.subscribe(queue_size=4)  # lags, resyncs from PostgreSQL
    rng = random.Random(5)
    # Both nodes write, so B's own events interleave with A's (smaller ids must not be lost).
    await asyncio.gather(write_for("a", a_store, 80, random.Random(rng.random())),
                         write_for("b", b_store, 80, random.Random(rng.random())))
    middle = await a_store.max_event_id()
    resumed_c = c_bus.subscribe(after_id=first + (middle - first) // 2)  # a client moves to C
    await asyncio.gather(write_for("a", a_store, 40, random.Random(rng.random())),
                         write_for("b", b_store, 40, random.Random(rng.random())))
    last = await a_store.max_event_id()

    async def drain(sub: object, upto: int) -> list[Event]:
        out: list[Event] = []
        async for e in sub:  # type: ignore[attr-defined]
            out.append(e)
            if e.id >= upto:
                return out
        return out

    seen_b = await asyncio.wait_for(drain(live_b, last), 15)
    seen_small = await asyncio.wait_for(drain(small, last), 15)
    seen_c = await asyncio.wait_for(drain(resumed_c, last), 15)
    assert_exactly_once_in_order(seen_b, first, last)
    assert {e.owner for e in seen_b} == {"a", "b"}
    assert_exactly_once_in_order(seen_small, first, last)
    assert small.resyncs > 0
    assert_exactly_once_in_order(seen_c, first + (middle - first) // 2 + 1, last)
    for sub in (live_b, small, resumed_c):
        await sub.aclose()


async def test_commits_that_never_reached_redis_are_filled_from_postgres_while_redis_is_up(
    start_node: StartNode, stream: str
) -> None:
    """Node Q publishes nothing (as if every XADD of its were dropped); B's own events, which
    come at once, leave gaps where Q's ids are, and Q's last commit has nothing after it."""
    q_store, _, _ = await start_node("q", None)
    b_store, b_feed, b_seen = await start_node("b", SHARED_REDIS, stream, check_interval=0.3)
    first = b_feed.delivered_id + 1
    await asyncio.gather(write_for("q", q_store, 60, random.Random(1)),
                         write_for("b", b_store, 60, random.Random(2)))
    await q_store.write(events=[event("q-tail", "q", 0)], sessions=[session("q-tail", "q", 1)])
    last = await q_store.max_event_id()
    await until(lambda: b_feed.delivered_id >= last, what="the gaps and the tail filled")
    await asyncio.sleep(0.3)
    assert_exactly_once_in_order(b_seen.events, first, last)
    assert b_feed.redis_connected and b_feed.events_from_pg > 0 and b_feed.events_from_redis == 0
    assert b_seen.mirror["q-tail"].description == "v1"


async def test_a_snapshot_held_from_redis_never_overwrites_a_newer_reload_from_postgres(
    start_node: StartNode,
) -> None:
    """Redis brings commit 2 of three while commit 1 is missing: its snapshot waits for its
    events. The gap is filled from PostgreSQL, which reloads the session as it is after commit
    3 and hands that out at once; when commit 2's turn comes, its older snapshot must not
    replace it (commit 3's events came from PostgreSQL, with no snapshot of their own)."""
    a_store, _, _ = await start_node("a", None)
    _, b_feed, b_seen = await start_node("b", None, poll_interval=60.0, check_interval=60.0)
    start = b_feed.delivered_id
    written = [await a_store.write(events=[event("a-s", "a", v)], sessions=[session("a-s", "a", v)])
               for v in (1, 2, 3)]
    assert [w.events[0].id for w in written] == [start + 1, start + 2, start + 3]
    b_feed._on_remote_commit("a", Committed(events=written[1].events, sessions=[session("a-s", "a", 2)]))
    assert b_feed.delivered_id == start, "commit 2 waits for commit 1"
    await b_feed.catch_up()
    assert [e.id for e in b_seen.events] == [start + 1, start + 2, start + 3]
    assert b_seen.mirror["a-s"].description == "v3"


async def test_after_a_read_that_brought_entries_the_reader_waits_a_linger_before_the_next(
    start_node: StartNode, stream: str
) -> None:
    """After a read that brought entries the reader waits ``linger`` before the next, so the
    entries that arrive meanwhile come in one read (a read costs the same with one entry as
    with many). The stand-in stream has an entry ready at every read: this node's own commits,
    which the reader skips without decoding."""
    _, feed, seen = await start_node("b", SHARED_REDIS, stream, linger=0.05)
    calls: list[float] = []
    done = asyncio.Event()

    class Always:
        async def xread(self, streams: dict[str, str], count: int, block: int) -> object:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) >= 8:
                done.set()
                await asyncio.Event().wait()  # a quiet stream from here on
            return [(stream, [(f"{len(calls)}-0", {"node": "b"})])]

    real, feed._reader = feed._reader, Always()  # type: ignore[assignment]
    try:
        await asyncio.wait_for(done.wait(), 15)
    finally:
        feed._reader = real
    gaps = [b - a for a, b in itertools.pairwise(calls[1:])]
    assert all(gap >= 0.05 for gap in gaps), gaps
    assert feed.reads >= 7 and seen.events == [], "own entries are skipped"


async def test_closing_ends_the_reader_even_when_the_redis_client_swallows_the_cancel(
    start_node: StartNode, stream: str
) -> None:
    """redis-py sometimes loses a task's cancel that lands as a reply arrives (5 of 150 blocked
    XREADs cancelled at random moments, redis-py 8.2): the read returns as if nothing happened.
    The reader must still stop, or closing the node waits for ever."""
    _, feed, _ = await start_node("b", SHARED_REDIS, stream, linger=0.0)
    reading = asyncio.Event()

    class Swallowing:
        async def xread(self, streams: dict[str, str], count: int, block: int) -> object:
            reading.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.2)  # a blocked read whose cancel is lost
            return []

    real, feed._reader = feed._reader, Swallowing()  # type: ignore[assignment]
    try:
        await asyncio.wait_for(reading.wait(), 15)  # the real read in flight returned first
        await asyncio.wait_for(feed.aclose(), 10)
    finally:
        if real is not None:
            await real.aclose()


def test_a_stream_entry_round_trips_and_entries_of_older_nodes_still_read() -> None:
    """A commit as a stream entry: events and snapshots each as one JSON array of objects (read
    in one pass); entries written by nodes before that change (an array of JSON strings) are
    read too, so a cluster can be upgraded node by node."""
    s = session("ses_x", "alice", 3)
    events = [Event(id=7 + i, type=EventType.STATUS, session_id="ses_x", owner="alice",
                    timestamp=s.created_at, payload={"i": i, "text": 'é "quoted"\n'}) for i in range(2)]
    committed = Committed(events=events, sessions=[s], deleted=["ses_gone"])
    fields = encode("n1", committed)
    assert fields["events"].startswith("[{") and fields["sessions"].startswith("[{")
    assert decode(fields) == ("n1", committed)
    older = {"node": "n1", "events": json.dumps([e.model_dump_json() for e in events]),
             "sessions": json.dumps([s.model_dump_json()]), "deleted": json.dumps(["ses_gone"])}
    assert decode(older) == ("n1", committed)
    empty = Committed(events=[], sessions=[], deleted=[])
    assert decode(encode("n2", empty)) == ("n2", empty)
