"""Chat traffic the engine reports: messages seen on the account, and receipts for ours.

The manager delegates here; every write goes through the store together with its event, so
the bus, SSE streams and webhooks see exactly what was stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from watui.engines.base import IncomingMessage, MessageReceipt
from watui.machine import EventType
from watui.models import MessageDirection, MessageStatus, NewEvent, Session
from watui.store import OUTGOING_PROGRESS, NewMessage

if TYPE_CHECKING:
    from watui.manager import SessionManager

log = logging.getLogger(__name__)


async def on_message(manager: SessionManager, session: Session, event: IncomingMessage) -> None:
    """Store a message seen on the account and publish it.

    ``from_me`` messages were typed on the phone (or another linked device): they are stored
    as outgoing (``direction`` out, status ``sent``) in the same chat as the other side's. One
    this session sent itself is already stored, so an echo of it is dropped.
    """
    now = manager.clock.now()
    chat = event.chat
    session = manager._sessions.get(session.id, session)
    if event.from_me:
        if event.message_id and await manager.store.find_message(session.id, event.message_id):
            return
        direction, status = MessageDirection.OUT, MessageStatus.SENT
        counters = {"messages_sent": session.messages_sent + 1}
    else:
        direction, status = MessageDirection.IN, MessageStatus.RECEIVED
        counters = {"messages_received": session.messages_received + 1}
    new = session.model_copy(update={**counters, "last_activity_at": now, "updated_at": now})
    manager._sessions[session.id] = new
    payload: dict[str, Any] = {
        "direction": direction.value, "chat": chat, "text": event.text, "message_id": event.message_id,
        "status": status.value, "sender": event.sender or chat,
    }
    if event.from_me:
        payload["from_phone"] = True
    await manager.store.write(
        sessions=[new],
        messages=[NewMessage(session.id, direction, chat, event.text, event.message_id, status,
                             timestamp=event.timestamp)],
        events=[NewEvent(type=EventType.MESSAGE, session_id=session.id, owner=session.owner, timestamp=now,
                         payload=payload)],
    )
    manager._notify(new)


async def on_receipt(manager: SessionManager, session: Session, receipt: MessageReceipt) -> None:
    """Move each message the receipt names forward (delivered, read) and publish the change.

    A receipt for a message this session did not send through watui (sent before it was
    linked, or from the phone before watui saw it) changes nothing; nor does a late
    ``delivered`` after ``read``.
    """
    status = MessageStatus(receipt.status)
    for message_id in receipt.message_ids:
        message = await manager.store.find_message(session.id, message_id)
        if message is None or message.direction is not MessageDirection.OUT:
            continue
        if message.status not in OUTGOING_PROGRESS or (
            OUTGOING_PROGRESS.index(message.status) >= OUTGOING_PROGRESS.index(status)
        ):
            continue
        event = NewEvent(
            type=EventType.MESSAGE_STATUS, session_id=session.id, owner=session.owner,
            timestamp=manager.clock.now(),
            payload={"message_id": message_id, "status": status.value, "chat": message.chat},
        )
        await manager.store.update_message_status(session.id, message_id, status, events=[event])
