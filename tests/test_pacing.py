"""Pacing (``settings.send_rate``, ``settings.warmup``): sends to a paced session are stored
``pending`` and leave one at a time, in order, spaced by the rate with jitter; a full queue is
refused; what is queued survives a restart, a change of pace and a logout.

The fake clock drives the spacing: the tests move it and wait for the ``message_status``
events that settle each queued send, so no test depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.errors import SendQueueFull, SessionNotConnected
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.manager.pacing import JITTER, gap, rate_now
from watui.models import (
    Caller,
    Event,
    Message,
    MessageStatus,
    MessageType,
    SendMessage,
    SessionCreate,
    SessionSettings,
    SessionUpdate,
    SettingsPatch,
    SimulateRequest,
    Warmup,
)

TO = "14155550100"


async def paced(admin: ScopedService, clock: FakeClock, rate: int | None = 60, **settings: object) -> str:
    session = await admin.create_session(SessionCreate(
        name="paced", settings=SessionSettings.model_validate({"send_rate": rate, **settings})))
    await clock.advance(0)
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    await clock.advance(0)
    assert (await admin.get_session(session.id)).status is Status.CONNECTED
    return session.id


def text(body: str) -> SendMessage:
    return SendMessage(to=TO, text=body)


async def settled(live: AsyncIterator[Event], clock: FakeClock, count: int, step: float = 0.25) -> list[Event]:
    """The next ``count`` ``message_status`` events that settle a queued send, moving the
    clock by ``step`` until each has come."""
    seen: list[Event] = []
    while len(seen) < count:
        await clock.advance(step)
        while True:
            try:
                event = await _next_ready(live)
            except LookupError:
                break
            if "id" in event.payload:
                seen.append(event)
    return seen


async def _next_ready(live: AsyncIterator[Event]) -> Event:
    """The subscription's next event if one is already there (LookupError: none yet)."""
    task = asyncio.ensure_future(anext(live))
    for _ in range(50):
        await asyncio.sleep(0)
        if task.done():
            return task.result()
    task.cancel()
    raise LookupError


# ---------------------------------------------------------------- the rate and its jitter


def test_the_rate_ramps_from_start_rate_to_send_rate_over_the_warmup() -> None:
    created = FakeClock().now()
    flat = SessionSettings(send_rate=30)
    assert rate_now(flat, created, created) == 30.0
    assert rate_now(SessionSettings(), created, created) is None
    ramp = SessionSettings(send_rate=40, warmup=Warmup(days=10, start_rate=4))
    assert rate_now(ramp, created, created) == 4.0
    assert rate_now(ramp, created, created + timedelta(days=5)) == pytest.approx(22.0)
    assert rate_now(ramp, created, created + timedelta(days=10)) == 40.0
    assert rate_now(ramp, created, created + timedelta(days=400)) == 40.0
    # A start rate above the target never makes the ramp go down.
    assert rate_now(SessionSettings(send_rate=5, warmup=Warmup(days=3, start_rate=50)), created, created) == 5.0


def test_gaps_are_jittered_around_the_rate_and_average_to_it() -> None:
    rng = random.Random(3)
    gaps = [gap(12.0, rng) for _ in range(20_000)]
    assert min(gaps) >= 5.0 * (1 - JITTER) and max(gaps) <= 5.0 * (1 + JITTER)
    assert max(gaps) - min(gaps) > 5.0 * JITTER  # not a fixed beat
    assert sum(gaps) / len(gaps) == pytest.approx(5.0, rel=0.01)
    assert gap(None, rng) == 0.0


def test_settings_refuse_rates_out_of_range() -> None:
    for bad in ({"send_rate": 0}, {"send_rate": 601}, {"send_rate": 10, "warmup": {"days": 0}},
                {"send_rate": 10, "warmup": {"days": 5, "start_rate": 0}}):
        with pytest.raises(ValueError):
            SessionSettings.model_validate(bad)


# ---------------------------------------------------------------- the queue


async def test_paced_sends_wait_in_order_and_leave_spaced_by_the_rate(
    manager: SessionManager, admin: ScopedService, clock: FakeClock,
) -> None:
    session_id = await paced(admin, clock, rate=60)  # one a second, 0.7-1.3 s apart
    live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
    queued = [await admin.send(session_id, text(f"message {i}")) for i in range(5)]
    assert [m.status for m in queued] == [MessageStatus.PENDING] * 5
    assert all(m.message_id is None for m in queued)
    events = await settled(live, clock, 5)
    assert [e.payload["id"] for e in events] == [m.id for m in queued]
    assert all(e.payload["status"] == "sent" and e.payload["message_id"] for e in events)
    times = [e.timestamp for e in events]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(0.7 - 0.25 <= g <= 1.3 + 0.25 for g in gaps), gaps  # the clock moves in 0.25 s steps
    page = await admin.list_messages(session_id)
    by_id = {m.id: m for m in page.messages}
    assert [by_id[m.id].text for m in queued] == [f"message {i}" for i in range(5)]
    assert all(by_id[m.id].status is not MessageStatus.PENDING for m in queued)
    session = await admin.get_session(session_id)
    assert session.messages_sent == 5
    stats = await admin.message_stats(session_id)
    assert stats.sent == 5 and stats.pending == 0
    await live.aclose()


async def test_a_full_queue_is_refused_with_when_to_retry(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", send_queue_limit=3)
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=7), clock=clock)
    try:
        admin = manager.service(Caller.local_admin())
        session_id = await paced(admin, clock, rate=2)  # one every 30 s
        assert (await admin.send(session_id, text("first"))).status is MessageStatus.PENDING
        await manager.drain_all()  # the first of a quiet spell goes at once; the next in 21-39 s
        assert manager.pacer.queued(session_id) == 0
        for i in range(3):
            await admin.send(session_id, text(f"m{i}"))
        with pytest.raises(SendQueueFull) as refused:
            await admin.send(session_id, text("one too many"))
        assert refused.value.status == 429
        assert refused.value.details["queued"] == 3 and refused.value.details["limit"] == 3
        assert 21 <= refused.value.retry_after <= 39
        assert refused.value.headers() == {"Retry-After": str(refused.value.retry_after)}
        stats = await admin.message_stats(session_id)
        assert stats.pending == 3 and stats.sent == 1  # the refused one was not stored
        assert stats.total == 4
    finally:
        await manager.aclose()


async def test_unpaced_sends_go_at_once_and_turning_pacing_off_drains_the_queue_in_order(
    manager: SessionManager, admin: ScopedService, clock: FakeClock,
) -> None:
    session_id = await paced(admin, clock, rate=1)  # one a minute
    live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
    first = [await admin.send(session_id, text(f"early {i}")) for i in range(3)]
    await admin.update_session(session_id, SessionUpdate(settings=SettingsPatch(send_rate=None)))
    # Still behind the queue, so it cannot overtake what was sent before it.
    later = await admin.send(session_id, text("later"))
    assert later.status is MessageStatus.PENDING
    events = await settled(live, clock, 4, step=0.01)
    assert [e.payload["id"] for e in events] == [m.id for m in [*first, later]]
    assert manager.pacer.queued(session_id) == 0
    # The queue is empty and pacing off: a send goes at once, answered sent.
    assert (await admin.send(session_id, text("direct"))).status is MessageStatus.SENT
    await live.aclose()


async def test_media_waits_in_the_queue_and_history_off_keeps_no_body_once_sent(
    manager: SessionManager, admin: ScopedService, clock: FakeClock,
) -> None:
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
    session_id = await paced(admin, clock, rate=60, message_history=False)
    live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
    picture = await admin.send(session_id, SendMessage.model_validate({
        "to": TO, "type": "image", "caption": "our menu",
        "media": {"data": base64.b64encode(jpeg).decode(), "mimetype": "image/jpeg"}}))
    note = await admin.send(session_id, text("secret"))
    assert picture.status is MessageStatus.PENDING and picture.type is MessageType.IMAGE
    assert picture.media is not None and picture.media.id  # kept until its turn
    assert picture.caption == "our menu"
    events = await settled(live, clock, 2)
    assert [e.payload["status"] for e in events] == ["sent", "sent"]
    stored = {m.id: m for m in (await admin.list_messages(session_id)).messages}
    assert stored[note.id].text == "" and stored[picture.id].media is None  # history off
    assert manager.journal.media is not None
    assert await manager.journal.media.size(session_id, picture.media.id) is None
    await live.aclose()


async def test_a_send_to_a_paced_session_that_is_not_connected_is_refused(
    manager: SessionManager, admin: ScopedService, clock: FakeClock,
) -> None:
    session = await admin.create_session(SessionCreate(name="idle", start=False,
                                                       settings=SessionSettings(send_rate=10)))
    with pytest.raises(SessionNotConnected):
        await admin.send(session.id, text("hello"))
    assert manager.pacer.queued(session.id) == 0


async def test_logging_out_fails_what_was_queued(
    manager: SessionManager, admin: ScopedService, clock: FakeClock,
) -> None:
    session_id = await paced(admin, clock, rate=1)
    live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
    queued = [await admin.send(session_id, text(f"m{i}")) for i in range(3)]
    await admin.logout(session_id)
    events = await settled(live, clock, 3, step=0.01)
    # The first one may have gone before the logout; none is left pending.
    assert [e.payload["id"] for e in events] == [m.id for m in queued]
    assert all(e.payload["status"] in ("sent", "failed") for e in events)
    assert events[-1].payload["status"] == "failed" and "logged out" in events[-1].payload["error"]
    assert (await admin.message_stats(session_id)).pending == 0
    await live.aclose()


async def queued_then_closed(settings: Settings, count: int) -> tuple[str, list[Message], FakeClock]:
    """A manager that queues ``count`` sends at one a minute, then closes: the session, the
    queued messages, and a new clock from where the old one stopped."""
    clock = FakeClock()
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=7), clock=clock)
    admin = manager.service(Caller.local_admin())
    session_id = await paced(admin, clock, rate=1)
    queued = [await admin.send(session_id, text(f"m{i}")) for i in range(count)]
    await clock.advance(0)
    await manager.aclose()
    return session_id, queued, FakeClock(clock.now())


async def test_what_is_queued_is_sent_after_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", engine="simulated")
    session_id, queued, clock = await queued_then_closed(settings, 3)
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=7), clock=clock)
    try:
        admin = manager.service(Caller.local_admin())
        live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
        pending = await manager.store.pending_messages(session_id)
        assert [m.id for m in pending] == [m.id for m in queued][-len(pending):] and pending
        events = await settled(live, clock, len(pending), step=5)
        assert [e.payload["id"] for e in events] == [m.id for m in pending]
        assert (await admin.message_stats(session_id)).pending == 0
        await live.aclose()
    finally:
        await manager.aclose()


@pytest.mark.parametrize("keep_pace", [True, False], ids=["paced", "pacing-off"])
async def test_after_a_restart_older_queued_sends_go_before_new_ones(tmp_path: Path, keep_pace: bool) -> None:
    """After a restart the sends still stored pending go first, in order, and a send made once
    the session is back never overtakes them: paced still, or with pacing turned off (then the
    old ones go at once)."""
    settings = Settings(data_dir=tmp_path / "data", engine="simulated")
    session_id, queued, clock = await queued_then_closed(settings, 4)
    assert len(await _pending_after_close(settings, session_id)) >= 3
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=7), clock=clock)
    try:
        admin = manager.service(Caller.local_admin())
        if not keep_pace:
            await admin.update_session(session_id, SessionUpdate(settings=SettingsPatch(send_rate=None)))
        for _ in range(200):  # until the restore has reconnected it
            if (await admin.get_session(session_id)).status is Status.CONNECTED:
                break
            await clock.advance(0.5)
        new = await admin.send(session_id, text("new"))
        if keep_pace:
            assert new.status is MessageStatus.PENDING
            for _ in range(10):
                await clock.advance(80)  # a gap at 1 a minute is 42-78 s
        await manager.drain_all()
        rows = await manager.store.read_events(session_id=session_id,
                                               types=[EventType.MESSAGE, EventType.MESSAGE_STATUS])
        went = [e.payload["id"] for e in rows if e.type is EventType.MESSAGE_STATUS and "id" in e.payload]
        direct = [e.id for e in rows if e.type is EventType.MESSAGE and e.payload.get("status") == "sent"
                  and e.payload["text"] == "new"]
        if new.status is MessageStatus.PENDING:  # queued behind the old ones
            assert went[-1] == new.id and went[:-1] == [m.id for m in queued][-len(went) + 1:]
        else:  # the old ones had all gone already
            assert direct and all(e.id < direct[0] for e in rows if e.type is EventType.MESSAGE_STATUS)
        assert (await admin.message_stats(session_id)).pending == 0
    finally:
        await manager.aclose()


async def _pending_after_close(settings: Settings, session_id: str) -> list[int]:
    from watui.stores.sqlite import Store

    store = await Store.open(settings.db_path)
    try:
        return [m.id for m in await store.pending_messages(session_id)]
    finally:
        await store.close()
