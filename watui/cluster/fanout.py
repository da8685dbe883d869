"""Events and session snapshots between the nodes of a cluster: Redis Streams for speed,
PostgreSQL for truth.

Every node keeps every session of the cluster in memory and serves SSE from its own bus, so
each node must see every event of every node, in id order, with no gap and no duplicate, and
every session snapshot the other nodes write. :class:`ClusterFeed` does that:

- **Publish.** The store's ``on_commit_batch`` hook hands over each local transaction (its
  events, session snapshots and deleted ids); a background task XADDs it to one Redis Stream
  (approximate ``MAXLEN``) with the writing node's id. A commit never waits for Redis: the
  hand-over is a bounded queue, and what cannot be queued or sent is dropped, because
  PostgreSQL has it and the readers catch up from there.
- **Consume.** A reader task XREADs the stream (``BLOCK``) from where the node joined. When
  Redis goes away it reconnects with back-off; Redis keeps nothing on disk here, so after a
  restart the stream is empty and its ids start again: a stream whose newest id is below the
  reader's position is read from the start.
- **Sequence.** Committed event ids are contiguous and commit-ordered (docs/cluster.md, "The
  event log"), so the next id to deliver is always ``delivered_id + 1``. Events wait in a small
  buffer until it arrives. A local commit's events arrive at once through the hook; remote ones
  through Redis. If the next id has not come from Redis within ``gap_wait`` (or Redis is down),
  the feed reads it from PostgreSQL. Ids the log no longer has (a deleted session's message
  events) are skipped once a read from PostgreSQL shows them gone. While Redis is down the feed
  polls the counter every ``poll_interval``; while it is up, every ``check_interval``, which
  catches a lost tail (nothing after it to reveal the gap).
- **Sessions.** Another node's snapshots are handed to ``on_sessions`` just before the events of
  the same commit (in that node's commit order), so a consumer that reacts to an event already
  sees the session it describes. When events were recovered from PostgreSQL instead, the
  sessions they touch are reloaded from PostgreSQL (a missing row = deleted) and handed over the
  same way; a late Redis copy of such a commit then brings only the snapshots of sessions its
  events did not touch, and a copy waiting for a gap before its events drops those the read
  that filled the gap reloaded past it. A snapshot written without any event, while Redis was
  down, is seen with the next event of that session or the next reload. Reloads may name sessions this node runs
  itself: consumers keep their own version of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from watui.models import Event, Session
from watui.stores.postgres import Committed, PostgresStore

log = logging.getLogger(__name__)

STREAM = "watui:commits"
"""The Redis Stream every node publishes its commits to."""

PAGE = 1000
"""Events read from PostgreSQL per query when catching up; also the most commits the publisher
sends to Redis in one pipeline."""

LINGER = 0.05
"""Seconds the reader waits, after a read that brought entries, before its next read: that one
then brings every entry that arrived meanwhile. A read costs about the same fixed 0.1 ms of CPU
with one entry as with sixteen (redis-py, hiredis: 133 µs an entry read one by one, 12 µs
sixteen at a time), so under load this is most of what following the other nodes costs. An
entry after a quiet spell is read at once (the blocked read returns it); one that follows
another within the linger waits for it. A node following another's commits under load spends
0.37–0.54x of what it spent with no linger, about 0.67x of what it spent with 20 ms
(docs/cluster.md, "Reading in batches"); well below ``gap_wait``, so lingering sends no read
to PostgreSQL."""

EventsCallback = Callable[[list[Event]], None]
SessionsCallback = Callable[[list[Session], list[str]], None]


@dataclass(frozen=True, slots=True)
class _Held:
    """Another node's snapshots, waiting until the events of their commit are delivered."""

    first_id: int | None
    """The commit's first event id; None for a commit without events."""
    touched: frozenset[str]
    """The sessions the commit's events belong to."""
    sessions: list[Session]
    deleted: list[str]


_EVENTS = TypeAdapter(list[Event])
_SESSIONS = TypeAdapter(list[Session])


def _json_array(docs: Iterable[str]) -> str:
    return "[" + ",".join(docs) + "]"


def encode(node_id: str, committed: Committed) -> dict[str, str]:
    """A commit as the fields of one stream entry: its events and snapshots each as one JSON
    array of objects, read back in one pass each."""
    return {
        "node": node_id,
        "events": _json_array(event.model_dump_json() for event in committed.events),
        "sessions": _json_array(session.model_dump_json() for session in committed.sessions),
        "deleted": json.dumps(committed.deleted),
    }


def _read_list(adapter: TypeAdapter[list[Any]], model: Any, data: str, **context: Any) -> list[Any]:
    """A field of an entry: one JSON array of objects; or, as nodes before this one wrote it,
    an array of JSON strings each holding one object (a cluster upgraded node by node)."""
    if data.startswith('["'):
        return [model.model_validate_json(doc, context=context or None) for doc in json.loads(data)]
    return adapter.validate_json(data, context=context or None)


def decode(fields: dict[str, str]) -> tuple[str, Committed]:
    """The writing node and its commit, from one stream entry."""
    return fields["node"], Committed(
        events=_read_list(_EVENTS, Event, fields["events"]),
        sessions=_read_list(_SESSIONS, Session, fields["sessions"], stored=True),
        deleted=list(json.loads(fields["deleted"])),
    )


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


class ClusterFeed:
    """Every node's events in id order, exactly once, and the other nodes' session snapshots.

    ``on_events`` callbacks get each event once, in id order, with no gap (this node's own
    included); ``on_sessions(sessions, deleted_ids)`` callbacks get the other nodes' snapshots.
    Both are called synchronously, on the event loop, and must not block.
    """

    def __init__(
        self,
        store: PostgresStore,
        redis_url: str | None,
        node_id: str,
        *,
        stream: str = STREAM,
        maxlen: int = 100_000,
        gap_wait: float = 0.15,
        poll_interval: float = 0.25,
        check_interval: float = 1.0,
        publish_queue: int = 10_000,
        block: float = 1.0,
        linger: float = LINGER,
    ) -> None:
        self.store = store
        self.redis_url = redis_url
        self.node_id = node_id
        self.stream = stream
        self.maxlen = maxlen
        self.gap_wait = gap_wait
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.block = block
        self.linger = linger
        self.on_events: list[EventsCallback] = []
        self.on_sessions: list[SessionsCallback] = []

        self.delivered_id = 0
        """The last event id handed to ``on_events``."""
        self.redis_connected = False
        """True while the reader is attached to the stream."""
        self.events_local = 0
        self.events_from_redis = 0
        self.events_from_pg = 0
        self.published = 0
        self.publish_dropped = 0
        self.redis_reconnects = 0
        self.reads = 0
        """Reads of the stream that brought entries (one ``XREAD`` may bring many)."""

        self._pending: dict[int, Event] = {}
        self._complete_through = 0  # ids up to here that are not pending are gone from the log
        self._known_id = 0  # the newest id known to be committed
        self._held: dict[str, deque[_Held]] = {}
        self._reloaded: dict[str, int] = {}
        """Sessions a read from PostgreSQL reloaded and handed out, each with the newest event id
        committed when it was read: a snapshot held from Redis for a commit at or below that id
        is older than the one handed out, and is dropped when its turn comes."""
        self._wake = asyncio.Event()
        self._outbox: asyncio.Queue[Committed] = asyncio.Queue(publish_queue)
        self._reader: aioredis.Redis | None = None
        self._writer: aioredis.Redis | None = None
        self._position: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Join the stream (if Redis answers), start at the store's newest id, then follow."""
        if self._started:
            raise RuntimeError("this feed is already started")
        self._started = True
        if self.redis_url is not None:
            timeout = self.block + 5
            self._reader = aioredis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=timeout
            )
            self._writer = aioredis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=5.0
            )
            # Join before reading the counter: whatever commits in between is then either on
            # the stream after our position or below the counter's value; nothing is missed.
            with contextlib.suppress(RedisError, OSError):
                await self._join()
        newest = await self.store.max_event_id()
        self.delivered_id = self._complete_through = self._known_id = newest
        self.store.on_commit_batch.append(self._on_local_commit)
        self._tasks.append(asyncio.create_task(self._catch_up_loop(), name="watui-feed-catch-up"))
        if self.redis_url is not None:
            self._tasks.append(asyncio.create_task(self._read_loop(), name="watui-feed-reader"))
            self._tasks.append(asyncio.create_task(self._publish_loop(), name="watui-feed-publisher"))

    async def aclose(self) -> None:
        """Stop following; queued publications that were not sent are dropped."""
        with contextlib.suppress(ValueError):
            self.store.on_commit_batch.remove(self._on_local_commit)
        self._closing = True  # redis-py may swallow a cancel that lands as a reply arrives
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for client in (self._reader, self._writer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._reader = self._writer = None
        self.redis_connected = False

    # ---------------------------------------------------------------- sources

    def _on_local_commit(self, committed: Committed) -> None:
        """The store's hook: this node's commit, right after it committed."""
        self.events_local += self._accept(committed.events)
        self._advance()
        if self.redis_url is not None:
            try:
                self._outbox.put_nowait(committed)
            except asyncio.QueueFull:
                self.publish_dropped += 1  # PostgreSQL has it; the other nodes catch up

    def _on_remote_commit(self, node: str, committed: Committed) -> None:
        if node == self.node_id:
            return  # our own commits came through the hook
        self.events_from_redis += self._accept(committed.events)
        if committed.sessions or committed.deleted:
            events = committed.events
            self._held.setdefault(node, deque()).append(_Held(
                first_id=events[0].id if events else None,
                touched=frozenset(event.session_id for event in events),
                sessions=committed.sessions,
                deleted=committed.deleted,
            ))
        self._advance()

    def _accept(self, events: Iterable[Event]) -> int:
        """Buffer the events not delivered yet; how many were new."""
        new = 0
        for event in events:
            if event.id > self.delivered_id and event.id not in self._pending:
                self._pending[event.id] = event
                self._known_id = max(self._known_id, event.id)
                new += 1
        return new

    # ---------------------------------------------------------------- the sequencer

    def _advance(self) -> None:
        """Deliver every event that is next in line, with the snapshots that go before it."""
        while True:
            self._release_held()
            following = self.delivered_id + 1
            if following in self._pending:
                starts = {h.first_id for queue in self._held.values() for h in queue}
                run: list[Event] = []
                while following in self._pending and (not run or following not in starts):
                    run.append(self._pending.pop(following))
                    following += 1
                self.delivered_id = run[-1].id
                self._emit_events(run)
                continue
            if following <= self._complete_through:  # gone from the log: skip up to what we have
                upcoming = min(self._pending, default=self._complete_through + 1)
                self.delivered_id = min(self._complete_through, upcoming - 1)
                continue
            break
        if self._reloaded:  # every held snapshot at or below these ids was released by now
            self._reloaded = {sid: upto for sid, upto in self._reloaded.items() if upto > self.delivered_id}
        if self._pending:
            self._wake.set()  # a gap: the catch-up task fills it if Redis does not

    def _release_held(self) -> None:
        for queue in self._held.values():
            while queue:
                held = queue[0]
                if held.first_id is not None and held.first_id > self.delivered_id + 1:
                    break  # its events are not next yet
                queue.popleft()
                sessions, deleted = held.sessions, held.deleted
                if held.first_id is not None and held.first_id <= self.delivered_id:
                    # Its events came from PostgreSQL first, with a newer reload of the
                    # sessions they touch: this copy of those would be older.
                    sessions = [s for s in sessions if s.id not in held.touched]
                if held.first_id is not None and self._reloaded:
                    # A read from PostgreSQL that filled a gap before this commit's events
                    # reloaded some of its sessions as they are after it.
                    sessions = [s for s in sessions if self._reloaded.get(s.id, 0) < held.first_id]
                if sessions or deleted:
                    self._emit_sessions(sessions, deleted)

    def _emit_events(self, events: list[Event]) -> None:
        for callback in self.on_events:
            try:
                callback(events)
            except Exception:
                log.exception("feed on_events callback failed")

    def _emit_sessions(self, sessions: list[Session], deleted: list[str]) -> None:
        for callback in self.on_sessions:
            try:
                callback(sessions, deleted)
            except Exception:
                log.exception("feed on_sessions callback failed")

    # ---------------------------------------------------------------- catch-up from PostgreSQL

    async def _catch_up_loop(self) -> None:
        behind_since: float | None = None  # since when ``missing`` has been awaited
        missing = 0
        while True:
            try:
                if self.delivered_id >= self._known_id:
                    behind_since = None
                    interval = self.check_interval if self.redis_connected else self.poll_interval
                    if not await self._sleep(interval):
                        self._known_id = max(self._known_id, await self.store.max_event_id())
                    continue
                if behind_since is None or missing != self.delivered_id + 1:
                    # A new gap (or the old one filled and another opened behind it): under a
                    # steady stream of events this keeps PostgreSQL out of it while Redis keeps up.
                    behind_since, missing = time.monotonic(), self.delivered_id + 1
                if self.redis_connected:  # give Redis a moment to bring what is missing
                    remaining = self.gap_wait - (time.monotonic() - behind_since)
                    if remaining > 0:
                        await self._sleep(remaining)
                        continue
                await self._fill()
                behind_since = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster feed cannot read PostgreSQL (%s); retrying", exc)
                await asyncio.sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if woken early (a gap appeared, Redis went away)."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def catch_up(self) -> None:
        """Read from PostgreSQL now whatever is committed and not delivered yet, instead of
        at the next poll (the feed does it by itself; this is for callers that know better,
        such as a test or a node that just heard a peer wrote)."""
        await self._fill()

    async def _fill(self) -> None:
        """Read from PostgreSQL everything after ``delivered_id`` that is committed, reload the
        sessions it touches, and deliver it."""
        newest = await self.store.max_event_id()  # first: every id up to it is visible below
        rows: list[Event] = []
        after = self.delivered_id
        while True:
            page = await self.store.read_events(after_id=after, limit=PAGE)
            rows.extend(page)
            if len(page) < PAGE:
                break
            after = page[-1].id
        recovered = [e for e in rows if e.id > self.delivered_id and e.id not in self._pending]
        touched = list(dict.fromkeys(e.session_id for e in recovered))
        sessions, deleted = await self.store.load_sessions_by_id(touched) if touched else ([], [])
        self.events_from_pg += self._accept(recovered)
        self._complete_through = max(self._complete_through, newest, rows[-1].id if rows else 0)
        for session_id in touched:  # read after every event up to here
            self._reloaded[session_id] = self._complete_through
        self._known_id = max(self._known_id, self._complete_through)
        if sessions or deleted:
            self._emit_sessions(sessions, deleted)
        self._advance()

    # ---------------------------------------------------------------- Redis

    async def _join(self) -> None:
        """Attach to the stream: at its end the first time; after a reconnect, where we were,
        or at its start if the stream is older than our position (Redis restarted empty)."""
        assert self._reader is not None
        newest: Any = await self._reader.xrevrange(self.stream, count=1)
        last: str | None = str(newest[0][0]) if newest else None
        if self._position is None:
            self._position = last or "0-0"
        elif last is None or _stream_id(last) < _stream_id(self._position):
            self._position = "0-0"
        if not self.redis_connected:
            self.redis_connected = True
            log.info("cluster feed reads Redis stream %s", self.stream)
            self._wake.set()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        backoff = 0.1
        lingering = False
        while not self._closing:  # a cancel redis-py swallowed ends the loop here (<= block)
            try:
                if not self.redis_connected:
                    await self._join()
                    backoff = 0.1
                assert self._position is not None
                if lingering:
                    await asyncio.sleep(self.linger)  # what comes meanwhile is read together
                reply: Any = await self._reader.xread(
                    {self.stream: self._position}, count=500, block=int(self.block * 1000)
                )
                if reply:
                    self.reads += 1
                lingering = self.linger > 0 and bool(reply)
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        self._position = entry_id
                        if fields.get("node") == self.node_id:
                            continue  # our own commit, delivered by the hook: not even decoded
                        try:
                            node, committed = decode(fields)
                        except Exception:
                            log.exception("cluster feed skips an unreadable stream entry %s", entry_id)
                            continue
                        self._on_remote_commit(node, committed)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.redis_connected:
                    log.warning("cluster feed lost Redis (%s); following PostgreSQL until it is back", exc)
                    self.redis_connected = False
                    self.redis_reconnects += 1
                    self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _publish_loop(self) -> None:
        """XADD each commit, in commit order; the commits queued meanwhile go together, in one
        round trip (a pipeline, not a transaction)."""
        assert self._writer is not None
        failing = False
        while not self._closing:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < PAGE:
                batch.append(self._outbox.get_nowait())
            try:
                async with self._writer.pipeline(transaction=False) as pipe:
                    for committed in batch:
                        pipe.xadd(
                            self.stream,
                            encode(self.node_id, committed),  # type: ignore[arg-type]
                            maxlen=self.maxlen,
                            approximate=True,
                        )
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.publish_dropped += len(batch)
                if not failing:
                    log.warning("cluster feed cannot publish to Redis (%s); other nodes catch up from PostgreSQL", exc)
                    failing = True
                continue
            self.published += len(batch)
            failing = False
