"""The bus: persist then fan out; replay then live with no gap and no duplicate; laggards resync."""

from __future__ import annotations

import asyncio
from pathlib import Path

from watui.bus import EventBus
from watui.machine import EventType
from watui.models import Event, NewEvent
from watui.stores.sqlite import Store


def ev(i: int, session: str = "s1", owner: str = "alice", kind: EventType = EventType.STATUS) -> NewEvent:
    return NewEvent(type=kind, session_id=session, owner=owner, payload={"i": i})


async def collect(sub: object, n: int, timeout: float = 10.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for event in sub:  # type: ignore[attr-defined]
            out.append(event)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_published_events_are_persisted_before_subscribers_see_them(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db")
    bus = EventBus(store)
    sub = bus.subscribe()
    seen_in_db: list[bool] = []

    async def check() -> None:
        async for event in sub:
            rows = await store.read_events(after_id=event.id - 1, limit=1)
            seen_in_db.append(bool(rows) and rows[0].id == event.id)
            return

    task = asyncio.create_task(check())
    await bus.publish([ev(1)])
    await asyncio.wait_for(task, 5)
    assert seen_in_db == [True]
    await store.close()


async def test_replay_then_live_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db")
    bus = EventBus(store)
    for i in range(300):
        await bus.publish([ev(i)])

    async def publisher() -> None:
        for i in range(300, 900):
            await bus.publish([ev(i)])
            if i % 50 == 0:
                await asyncio.sleep(0)

    # Subscribe from the middle of the log while the publisher is running.
    task = asyncio.create_task(publisher())
    sub = bus.subscribe(after_id=120)
    got = await collect(sub, 900 - 120)
    await task
    assert [e.id for e in got] == list(range(121, 901))
    await sub.aclose()
    await store.close()


async def test_a_stalled_subscriber_neither_blocks_others_nor_loses_events(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db")
    bus = EventBus(store, queue_size=16)
    slow = bus.subscribe()
    fast = bus.subscribe()
    fast_got: list[int] = []

    async def fast_reader() -> None:
        async for event in fast:
            fast_got.append(event.id)
            if len(fast_got) == 500:
                return

    reader = asyncio.create_task(fast_reader())
    for i in range(500):
        await bus.publish([ev(i)])
    await asyncio.wait_for(reader, 10)
    assert fast_got == list(range(1, 501))
    # The stalled one never held more than its queue bound in memory...
    assert slow.pending <= 16
    assert slow.lagging
    # ...and once it reads, it gets every event, in order, exactly once (from the log).
    got = await collect(slow, 500)
    assert [e.id for e in got] == list(range(1, 501))
    assert slow.resyncs >= 1
    await store.close()


async def test_subscribers_filter_by_owner_session_and_type(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db")
    bus = EventBus(store)
    alice = bus.subscribe(owner="alice")
    one = bus.subscribe(session_id="s2")
    qr_only = bus.subscribe(types=frozenset({EventType.QR}))
    await bus.publish([ev(1, "s1", "alice"), ev(2, "s2", "bob"), ev(3, "s2", "alice", EventType.QR)])
    assert [e.payload["i"] for e in await collect(alice, 2)] == [1, 3]
    assert [e.payload["i"] for e in await collect(one, 2)] == [2, 3]
    assert [e.payload["i"] for e in await collect(qr_only, 1)] == [3]
    assert alice.get_nowait() is None
    await store.close()


async def test_replay_after_reopen_resumes_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = await Store.open(path)
    bus = EventBus(store)
    for i in range(10):
        await bus.publish([ev(i)])
    await store.close()
    store = await Store.open(path)
    bus = EventBus(store)
    sub = bus.subscribe(after_id=7)
    await bus.publish([ev(10)])
    got = await collect(sub, 4)
    assert [e.id for e in got] == [8, 9, 10, 11]
    await store.close()


async def test_closing_a_subscription_ends_iteration_and_unregisters(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db")
    bus = EventBus(store)
    sub = bus.subscribe()
    assert bus.subscriber_count == 1

    async def consume() -> list[Event]:
        return [e async for e in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await sub.aclose()
    assert await asyncio.wait_for(task, 2) == []
    assert bus.subscriber_count == 0
    await store.close()
