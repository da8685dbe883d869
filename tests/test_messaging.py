"""Chat traffic through the manager: receipts, messages typed on the phone, one chat id.

The simulated engine plays the other side (it delivers and reads sent messages after its
``receipt_delay``); facts the simulated phone has no button for are reported through the
session's own ``report`` channel, as the real engine would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from watui.clock import FakeClock, RealClock
from watui.config import Settings
from watui.engines.base import IncomingMessage, MessageReceipt, Report, SessionOptions
from watui.engines.simulated import SimulatedEngine, SimulatedSession
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.models import Caller, MessageDirection, MessageStatus, SessionCreate, SimulateRequest


async def linked(admin: ScopedService, clock: FakeClock, name: str = "shop") -> str:
    session = await admin.create_session(SessionCreate(name=name))
    await clock.advance(0)
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    await clock.advance(0)
    return session.id


async def status_events(manager: SessionManager, session_id: str) -> list[dict[str, object]]:
    rows = await manager.store.read_events(session_id=session_id, types=[EventType.MESSAGE_STATUS])
    return [e.payload for e in rows]


async def test_sent_messages_become_delivered_then_read(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    session_id = await linked(admin, clock)
    live = admin.subscribe(session_id=session_id, types=frozenset({EventType.MESSAGE_STATUS}))
    sent = await admin.send_message(session_id, "+1 415 555 0100", "order #1 ships today")
    assert sent.status is MessageStatus.SENT
    delay = engine.receipt_delay
    assert delay is not None
    await clock.advance(delay)
    page = await admin.list_messages(session_id)
    assert page.messages[0].status is MessageStatus.DELIVERED
    await clock.advance(delay)
    page = await admin.list_messages(session_id)
    assert page.messages[0].status is MessageStatus.READ
    assert await status_events(manager, session_id) == [
        {"message_id": sent.message_id, "status": "delivered", "chat": "14155550100"},
        {"message_id": sent.message_id, "status": "read", "chat": "14155550100"},
    ]
    # The events reached live subscribers (SSE and webhooks read the same bus).
    got = [await anext(live) for _ in range(2)]
    assert [(e.type, e.payload["status"]) for e in got] == [
        (EventType.MESSAGE_STATUS, "delivered"), (EventType.MESSAGE_STATUS, "read"),
    ]
    await live.aclose()


async def test_receipts_never_move_a_message_backwards_or_touch_others(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    engine.receipt_delay = None  # receipts come only from this test
    session_id = await linked(admin, clock)
    sent = await admin.send_message(session_id, "14155550100", "hi")
    assert sent.message_id
    phone = engine.phone(session_id)
    phone.report(MessageReceipt(chat="14155550100", message_ids=(sent.message_id,), status="read"))
    phone.report(MessageReceipt(chat="14155550100", message_ids=(sent.message_id,), status="delivered"))
    phone.report(MessageReceipt(chat="14155550100", message_ids=("3EB0UNKNOWN",), status="read"))
    await admin.simulate(session_id, SimulateRequest(action="message", chat="14155550100", text="yo"))
    incoming = (await admin.list_messages(session_id)).messages[0]
    assert incoming.direction is MessageDirection.IN and incoming.message_id
    phone.report(MessageReceipt(chat="14155550100", message_ids=(incoming.message_id,), status="read"))
    await manager.drain(session_id)
    messages = {m.message_id: m for m in (await admin.list_messages(session_id)).messages}
    assert messages[sent.message_id].status is MessageStatus.READ
    assert messages[incoming.message_id].status is MessageStatus.RECEIVED
    assert [p["status"] for p in await status_events(manager, session_id)] == ["read"]


async def test_a_message_typed_on_the_phone_is_stored_as_outgoing_in_the_same_chat(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    engine.receipt_delay = None
    session_id = await linked(admin, clock)
    sent = await admin.send_message(session_id, "+14155550100", "from watui")
    phone = engine.phone(session_id)
    when = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    phone.report(IncomingMessage(chat="14155550100", text="from my phone", message_id="3EB0PHONE",
                                 timestamp=when, sender="15550001111", from_me=True))
    # whatsmeow may hand back one we sent ourselves: it is not stored twice.
    phone.report(IncomingMessage(chat="14155550100", text="from watui", message_id=sent.message_id or "",
                                 timestamp=when, from_me=True))
    phone.report(IncomingMessage(chat="14155550100", text="thanks!", message_id="3A0THEIRS", timestamp=when,
                                 sender="14155550100"))
    await manager.drain(session_id)
    page = await admin.list_messages(session_id)
    assert [(m.direction, m.chat, m.text, m.status) for m in reversed(page.messages)] == [
        (MessageDirection.OUT, "14155550100", "from watui", MessageStatus.SENT),
        (MessageDirection.OUT, "14155550100", "from my phone", MessageStatus.SENT),
        (MessageDirection.IN, "14155550100", "thanks!", MessageStatus.RECEIVED),
    ]
    session = await admin.get_session(session_id)
    assert (session.messages_sent, session.messages_received) == (2, 1)
    rows = await manager.store.read_events(session_id=session_id, types=[EventType.MESSAGE])
    typed = [e.payload for e in rows if e.payload.get("message_id") == "3EB0PHONE"]
    assert typed == [{"direction": "out", "chat": "14155550100", "text": "from my phone",
                      "message_id": "3EB0PHONE", "status": "sent", "sender": "15550001111",
                      "type": "text", "from_phone": True}]


async def test_message_status_events_go_to_webhooks_that_want_them(
    manager: SessionManager, engine: SimulatedEngine, clock: FakeClock
) -> None:
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate.model_validate({
        "name": "hooked", "settings": {"webhook_url": "https://hooks.example.com/w",
                                       "webhook_events": ["message_status"]},
    }))
    await clock.advance(0)
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    await clock.advance(0)
    await admin.send_message(session.id, "14155550100", "hi")
    assert engine.receipt_delay is not None
    await clock.advance(2 * engine.receipt_delay)
    deliveries = await admin.list_webhook_deliveries(session.id)
    assert sorted(d.event_type.value for d in deliveries.deliveries) == ["message_status", "message_status"]


class OvertakingReceipts(SimulatedEngine):
    """WhatsApp as it sometimes is: the recipient's receipt arrives before the send returns."""

    def session(
        self, session_id: str, report: Report, *, auth_path: Path, options: SessionOptions | None = None,
    ) -> SimulatedSession:
        session = super().session(session_id, report, auth_path=auth_path, options=options)
        send = session.send_text

        async def send_text(to: str, text: str) -> str:
            message_id = await send(to, text)
            report(MessageReceipt(chat=to, message_ids=(message_id,), status="delivered"))
            await asyncio.sleep(0.05)  # the session handles the receipt before the send is stored
            return message_id

        session.send_text = send_text  # type: ignore[method-assign]
        return session


async def reach(admin: ScopedService, session_id: str, status: Status) -> None:
    for _ in range(500):
        if (await admin.get_session(session_id)).status is status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{session_id} never became {status}")


async def test_a_receipt_that_overtakes_its_message_is_not_lost(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", sqlite_synchronous="OFF")
    engine = OvertakingReceipts(receipt_delay=None)
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
    try:
        admin = manager.service(Caller.local_admin())
        session = await admin.create_session(SessionCreate(name="fast"))
        await reach(admin, session.id, Status.QR_READY)
        await admin.simulate(session.id, SimulateRequest(action="scan"))
        await reach(admin, session.id, Status.CONNECTED)
        sent = await admin.send_message(session.id, "14155550100", "quick")
        assert sent.status is MessageStatus.DELIVERED
        stored = (await admin.list_messages(session.id)).messages[0]
        assert stored.status is MessageStatus.DELIVERED
        assert [p["status"] for p in await status_events(manager, session.id)] == ["delivered"]
    finally:
        await manager.aclose()
