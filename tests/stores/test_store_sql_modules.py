"""The modules that send their own SQL (webhook outbox and dispatcher, retention, the
revoked-key watcher, stream snapshots), run against both store backends: each picks its SQL by
``store.dialect``, and must do the same thing on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sql_helpers import FAST, drained, eventually, hooked_session, new_event, settings_for
from standardwebhooks import Webhook
from webhook_receiver import Receiver

from watui.clock import FakeClock, RealClock
from watui.machine import EventType
from watui.manager.retention import Retention
from watui.models import MessageDirection, MessageStatus, NewEvent, NewMessage, utcnow
from watui.server.limits import revoked_keys_query
from watui.server.streams import latest_events
from watui.stores.base import StoreProtocol
from watui.webhooks import DeliveryStatus, WebhookDispatcher, list_deliveries, new_secret, outbox

pytestmark = pytest.mark.timeout(60)



# ==================================================================== webhook outbox


async def test_outbox_delivers_retries_with_the_same_webhook_id_and_lists_attempts(
    store: StoreProtocol, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(respond=lambda request, n: 503 if n <= 2 else 204)
    await receiver.start()
    secret = new_secret()
    sessions = {"ses_a": hooked_session("ses_a", receiver.url(), secret)}
    dispatcher = WebhookDispatcher(store, settings_for(tmp_path), sessions=sessions, clock=RealClock(),
                                   options=FAST)
    dispatcher.start()
    try:
        written = await store.append([new_event("ses_a", i) for i in range(3)])
        await eventually(lambda: drained(dispatcher), what="the outbox to drain")
    finally:
        await dispatcher.aclose()

    by_event = receiver.by_event()
    assert sorted(by_event) == [e.id for e in written]
    for requests in by_event.values():
        assert len({r.webhook_id for r in requests}) == 1  # the same webhook-id on every retry
        Webhook(secret).verify(requests[-1].body, requests[-1].headers)
    assert sum(len(r) for r in by_event.values()) == 5  # two 503s, then three deliveries
    page = await list_deliveries(store, "ses_a")
    assert page.total == 3
    assert {d.status for d in page.deliveries} == {DeliveryStatus.DELIVERED}
    retried = [d for d in page.deliveries if d.attempts > 1]
    assert retried and all(d.attempt_log[0].status_code == 503 for d in retried)
    assert all(d.delivered_at is not None and d.next_attempt_at is None for d in page.deliveries)
    assert all(d.created_at.tzinfo is not None for d in page.deliveries)


async def test_outbox_picks_due_rows_skipping_busy_ones_and_expires_old_ones(store: StoreProtocol) -> None:
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    events = await store.append([new_event("ses_a", 0), new_event("ses_b", 1), new_event("ses_c", 2, owner="bob")])
    await store.write(statements=[
        outbox.enqueue(store, e.id, e.session_id, f"http://127.0.0.1:9/{e.session_id}", None, t0 + timedelta(seconds=i))
        for i, e in enumerate(events)
    ])
    claim = outbox.Claim("node-1", lease=30)

    async def pick(now: datetime, **skip: list[Any]) -> list[str]:
        rows = await outbox.pick(store, now, skip_ids=skip.get("ids", []), skip_sessions=skip.get("sessions", []),
                                 skip_urls=skip.get("urls", []), skip_owners=skip.get("owners", []), limit=10,
                                 claim=claim)
        await outbox.release(store, [r.id for r in rows], claim)
        return [r.session_id for r in rows]

    assert await pick(t0 - timedelta(seconds=1)) == []
    assert await pick(t0 + timedelta(seconds=1)) == ["ses_a", "ses_b"]  # oldest first
    later = t0 + timedelta(seconds=5)
    assert await pick(later) == ["ses_a", "ses_b", "ses_c"]
    assert await pick(later, sessions=["ses_a"], owners=["bob"]) == ["ses_b"]
    assert await pick(later, urls=["http://127.0.0.1:9/ses_b"]) == ["ses_a", "ses_c"]
    first = (await outbox.pick(store, later, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                               limit=1, claim=claim))[0]
    assert first.session_id == "ses_a" and first.event_ts == events[0].timestamp
    assert first.created_at == t0 and first.webhook_id.startswith("msg_")
    assert await pick(later, ids=[first.id]) == ["ses_b", "ses_c"]
    assert await outbox.next_due(store, t0) == t0 + timedelta(seconds=1)

    # Queued before the cutoff and not in flight: dead.
    await outbox.expire(store, t0 + timedelta(seconds=1), in_flight=[first.id])
    assert await outbox.pending_count(store) == 2
    # On PostgreSQL ``first`` is still claimed (picked above, never released): no pick sees it.
    assert await pick(later) == (["ses_c"] if store.dialect == "postgresql" else ["ses_a", "ses_c"])
    await outbox.release(store, [first.id], claim)
    assert await pick(later) == ["ses_a", "ses_c"]
    page = await list_deliveries(store, "ses_b")
    assert page.deliveries[0].status is DeliveryStatus.DEAD
    assert page.deliveries[0].last_error == "expired before any attempt"


async def test_a_receiver_answer_with_nul_is_recorded(
    store: StoreProtocol, tmp_path: Path
) -> None:
    """An attempt's error comes from the receiver (its answer): a NUL in it must not fail the
    write that records the outcome (PostgreSQL stores U+FFFD for it)."""
    events = await store.append([new_event("ses_a", 0)])
    now = utcnow()
    await store.write(statements=[outbox.enqueue(store, events[0].id, "ses_a", "http://127.0.0.1:9/", None, now)])
    claim = outbox.Claim("node-1", lease=30)
    [due] = await outbox.pick(store, now, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                              limit=5, claim=claim)
    await store.write(statements=outbox.record(
        store, due, now, status=DeliveryStatus.FAILED, next_at=None, status_code=400,
        error="HTTP 400: bad\x00body", duration_ms=1.5, claim=claim))
    [delivery] = (await list_deliveries(store, "ses_a")).deliveries
    assert delivery.status is DeliveryStatus.FAILED
    expected = "HTTP 400: bad\ufffdbody" if store.dialect == "postgresql" else "HTTP 400: bad\x00body"
    assert delivery.last_error == expected == delivery.attempt_log[0].error


# ==================================================================== retention


async def test_retention_prunes_old_events_messages_and_finished_deliveries(
    store: StoreProtocol, tmp_path: Path
) -> None:
    clock = FakeClock()
    now = clock.now()
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    old_events = await store.append([new_event("ses_a", i, at=old + timedelta(seconds=i)) for i in range(4)])
    kept_events = await store.append([new_event("ses_a", 10 + i, at=recent) for i in range(2)])
    for at, text in ((old, "old"), (now - timedelta(days=100), "older"), (recent, "new")):
        await store.write(messages=[NewMessage("ses_a", MessageDirection.IN, "14155550100", text, None,
                                               MessageStatus.DELIVERED, timestamp=at)])
    await store.write(statements=[
        outbox.enqueue(store, old_events[0].id, "ses_a", "http://127.0.0.1:9/", None, old),  # goes with its event
        outbox.enqueue(store, kept_events[0].id, "ses_a", "http://127.0.0.1:9/", None, now - timedelta(days=10)),
        outbox.enqueue(store, kept_events[1].id, "ses_a", "http://127.0.0.1:9/", None, now - timedelta(days=10)),
    ])
    arg = "$1" if store.dialect == "postgresql" else "?"
    await store.write(statements=[
        (f"UPDATE webhook_deliveries SET status = 'dead' WHERE event_id = {arg}", (old_events[0].id,)),
        (f"UPDATE webhook_deliveries SET status = 'delivered' WHERE event_id = {arg}", (kept_events[0].id,)),
    ])
    retention = Retention(store, settings_for(tmp_path, event_retention_days=30, message_retention_days=30,
                                              webhook_retention_days=7), clock)

    pruned = await retention.prune()

    # The dead delivery went with its event, the delivered one for its age: both counted.
    assert (pruned.events, pruned.messages, pruned.deliveries, pruned.held) == (4, 2, 2, 0)
    assert await store.read_events() == kept_events
    assert await store.oldest_event_id() == kept_events[0].id
    messages, total = await store.list_messages("ses_a")
    assert total == 1 and messages[0].text == "new"
    [pending] = (await list_deliveries(store, "ses_a")).deliveries  # pending ones are never pruned here
    assert pending.status is DeliveryStatus.PENDING and pending.event_id == kept_events[1].id
    again = await retention.prune()
    assert (again.events, again.messages, again.deliveries) == (0, 0, 0)


async def test_retention_on_several_nodes_at_once(open_store: Callable[..., Any], tmp_path: Path) -> None:
    """Every node of a cluster runs retention; passes that overlap delete each row once and
    never fail (on SQLite this is one store running overlapping passes)."""
    stores: list[StoreProtocol] = [await open_store() for _ in range(3)]
    clock = FakeClock()
    old = clock.now() - timedelta(days=40)
    for batch in range(10):
        await stores[0].append([new_event("ses_a", batch * 100 + i, at=old) for i in range(100)])
    await stores[0].write(messages=[
        NewMessage("ses_a", MessageDirection.IN, "1415", f"m{i}", None, MessageStatus.DELIVERED, timestamp=old)
        for i in range(300)
    ])
    kept = await stores[0].append([new_event("ses_a", 9999)])
    settings = settings_for(tmp_path, event_retention_days=30, message_retention_days=30)
    passes = [Retention(s, settings, clock) for s in stores]

    results = await asyncio.gather(*(r.prune() for r in passes))

    assert all(r.events <= 1000 and r.messages <= 300 for r in results)
    assert await stores[1].read_events() == kept
    assert (await stores[2].list_messages("ses_a"))[1] == 0


# ==================================================================== keys and streams


async def test_revoked_keys_query_names_revoked_and_unknown_keys(store: StoreProtocol) -> None:
    kept, _ = await store.create_api_key("alice")
    gone, _ = await store.create_api_key("bob")
    revoked = revoked_keys_query(store)
    assert await revoked([kept.id, gone.id]) == []
    assert await store.revoke_api_key(gone.id)
    assert await revoked([kept.id, gone.id, "key_unknown"]) == [gone.id, "key_unknown"]


async def test_latest_events_are_the_newest_of_each_snapshot_kind_up_to_an_id(store: StoreProtocol) -> None:
    first = await store.append([
        new_event("ses_a", 0, EventType.STATUS), new_event("ses_a", 1, EventType.QR),
        new_event("ses_b", 2, EventType.QR), new_event("ses_a", 3, EventType.MESSAGE),
    ])
    second = await store.append([new_event("ses_a", 4, EventType.QR), new_event("ses_a", 5, EventType.STATUS)])

    latest = await latest_events(store, "ses_a", second[0].id)
    assert latest == {EventType.STATUS: first[0], EventType.QR: second[0]}
    assert latest[EventType.QR].timestamp == second[0].timestamp
    assert await latest_events(store, "ses_a", second[1].id) == {EventType.STATUS: second[1],
                                                                 EventType.QR: second[0]}
    assert await latest_events(store, "ses_a", first[0].id - 1) == {}


# ==================================================================== NUL characters


async def test_engine_text_with_nul_is_kept_and_never_fails_a_write(store: StoreProtocol) -> None:
    """WhatsApp may send U+0000. The event (JSON) keeps it exactly; the messages table keeps it
    on SQLite and has U+FFFD in its place on PostgreSQL (whose ``text`` cannot hold NUL); the
    write succeeds either way, and so do the writes batched with it."""
    text = "hi\x00there"
    results = await asyncio.gather(
        store.write(events=[NewEvent(type=EventType.MESSAGE, session_id="ses_a", owner="alice",
                                     payload={"text": text})],
                    messages=[NewMessage("ses_a", MessageDirection.IN, "1415\x00", text, "wa\x00id",
                                         MessageStatus.DELIVERED)]),
        store.append([new_event("ses_a", 1, EventType.STATUS)]),
    )
    assert len(results[1]) == 1
    [event] = await store.read_events(types=[EventType.MESSAGE])
    assert event.payload["text"] == text
    [message], _ = await store.list_messages("ses_a")
    stored = text.replace("\x00", "\ufffd") if store.dialect == "postgresql" else text
    assert message.text == stored
    assert message.chat == ("1415\ufffd" if store.dialect == "postgresql" else "1415\x00")
