"""Chat traffic the engine reports: messages seen on the account, and receipts for ours.

The manager delegates here; every write goes through its journal (watui/manager/journal.py)
or the store together with its event, so the bus, SSE streams and webhooks see exactly what
was stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from watui.engines.base import EngineSession, IncomingMessage, MessageReceipt, Outgoing
from watui.machine import EventType
from watui.manager import media
from watui.manager.runtime import ENGINE_CALL_TIMEOUT
from watui.models import (
    OUTGOING_PROGRESS,
    Message,
    MessageDirection,
    MessageStatus,
    MessageType,
    NewEvent,
    NewMessage,
    Session,
)

if TYPE_CHECKING:
    from watui.manager.journal import Journal

log = logging.getLogger(__name__)

def outgoing_payload(
    kind: MessageType, chat: str, text: str, message_id: str | None, status: MessageStatus, extra: dict[str, Any],
) -> dict[str, Any]:
    """The ``message`` event of a message this session sends: a media message's text is its
    ``caption`` (``text`` is ""); ``extra`` carries the media descriptor, location or contact."""
    payload: dict[str, Any] = {"direction": "out", "chat": chat, "text": text, "message_id": message_id,
                               "status": status.value, "type": kind.value, **extra}
    if kind is not MessageType.TEXT:
        payload["text"] = ""
        if text:
            payload["caption"] = text
    return payload


async def deliver(engine: EngineSession, chat: str, message: Outgoing) -> tuple[str | None, str | None]:
    """Hand one message to the engine: (WhatsApp's message id, None), or (None, the error)."""
    try:
        sending = engine.send_text(chat, message.text) if message.type == "text" else engine.send(chat, message)
        return await asyncio.wait_for(sending, ENGINE_CALL_TIMEOUT), None
    except Exception as exc:
        return None, str(exc) or type(exc).__name__


async def on_message(journal: Journal, session: Session, event: IncomingMessage) -> None:
    """Store a message seen on the account and publish it.

    ``from_me`` messages were typed on the phone (or another linked device): they are stored
    as outgoing (``direction`` out, status ``sent``) in the same chat as the other side's. One
    this session sent itself is already stored, so an echo of it is dropped.
    """
    now = journal.clock.now()
    chat = event.chat
    session = journal.registry.sessions.get(session.id, session)
    if event.from_me:
        if event.message_id and await journal.store.find_message(session.id, event.message_id):
            if event.media is not None:
                await media.discard(event.media.path)
            return
        direction, status = MessageDirection.OUT, MessageStatus.SENT
    else:
        direction, status = MessageDirection.IN, MessageStatus.RECEIVED
    history = session.settings.message_history
    kind = MessageType(event.type) if event.type in MessageType.__members__.values() else MessageType.TEXT
    info = await media.received_media(journal.media, session.id, event, history=history)
    details, extra = media.details_of(info, event.location, event.contact) if history else (None, {})
    session = journal.registry.sessions.get(session.id, session)  # it may have moved meanwhile
    if direction is MessageDirection.OUT:
        counters = {"messages_sent": session.messages_sent + 1}
    else:
        counters = {"messages_received": session.messages_received + 1}
    new = session.model_copy(update={**counters, "last_activity_at": now, "updated_at": now})
    payload: dict[str, Any] = {
        "direction": direction.value, "chat": chat, "text": event.text, "message_id": event.message_id,
        "status": status.value, "sender": event.sender or chat, "type": kind.value, **extra,
    }
    if kind is not MessageType.TEXT:
        payload["text"] = ""
        if event.text:
            payload["caption"] = event.text
    if event.from_me:
        payload["from_phone"] = True
    # Memory changes with the write, and back if the write fails (the store is unavailable).
    await journal.write_snapshot(
        session, new,
        messages=[NewMessage(session.id, direction, chat,
                             event.text if history else "", event.message_id, status,
                             timestamp=event.timestamp, type=kind, details=details)],
        events=[NewEvent(type=EventType.MESSAGE, session_id=session.id, owner=session.owner, timestamp=now,
                         payload=payload)],
    )


EARLY_RECEIPTS = 256
"""Receipts kept per session for messages not stored yet (a receipt can overtake the write
of the message it is about: the send returns, then waits for the session's lock)."""


async def on_receipt(
    journal: Journal, session: Session, receipt: MessageReceipt,
    early: OrderedDict[str, MessageStatus] | None = None,
) -> None:
    """Move each message the receipt names forward (delivered, read) and publish the change.

    A receipt for a message that is not stored is kept in ``early`` (bounded) in case its
    send is about to be stored; one for a message sent before watui saw the account simply
    ages out. A late ``delivered`` after ``read`` changes nothing.
    """
    status = MessageStatus(receipt.status)
    for message_id in receipt.message_ids:
        message = await journal.store.find_message(session.id, message_id)
        if message is None:
            if early is not None:
                _hold(early, message_id, status)
            continue
        await advance(journal, session, message, status)


def _hold(early: OrderedDict[str, MessageStatus], message_id: str, status: MessageStatus) -> None:
    held = early.get(message_id)
    if held is None or _rank(status) > _rank(held):
        early[message_id] = status
    early.move_to_end(message_id)
    while len(early) > EARLY_RECEIPTS:
        early.popitem(last=False)


def _rank(status: MessageStatus) -> int:
    return OUTGOING_PROGRESS.index(status) if status in OUTGOING_PROGRESS else -1


async def advance(journal: Journal, session: Session, message: Message, status: MessageStatus) -> Message:
    """Move one stored outgoing message forward to ``status`` (else leave it), with its event."""
    if message.direction is not MessageDirection.OUT or message.message_id is None:
        return message
    if message.status not in OUTGOING_PROGRESS or _rank(message.status) >= _rank(status):
        return message
    event = NewEvent(
        type=EventType.MESSAGE_STATUS, session_id=session.id, owner=session.owner,
        timestamp=journal.clock.now(),
        payload={"message_id": message.message_id, "status": status.value, "chat": message.chat},
    )
    await journal.store.update_message_status(session.id, message.message_id, status, events=[event])
    return message.model_copy(update={"status": status})
