"""The frames between watui and an engine host: every engine fact survives the trip."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import get_args

import pytest

from watui.engines.base import (
    EngineEvent,
    IncomingMessage,
    LoggedOut,
    MessageReceipt,
    PairingWindowClosed,
    PairSuccess,
    QrCodeIssued,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)
from watui.engines.hosts.wire import (
    HEADER,
    MAX_FRAME,
    WireError,
    decode_event,
    encode_event,
    frame,
    read_frame,
)

FACTS: list[EngineEvent] = [
    QrCodeIssued("2@abc,def,ghi,1"),
    PairSuccess("15551234567:3@s.whatsapp.net", "15551234567", "android"),
    SessionConnected("15551234567:3@s.whatsapp.net", "15551234567", "Ana ✨"),
    SessionDisconnected("engine_crashed"),
    LoggedOut(),
    SessionError("cannot reach WhatsApp: connection refused by the proxy at 127.0.0.1:9", code="connect_failed",
                 details="… proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused"),
    IncomingMessage(chat="14155550100", text="[bold]not markup[/] \x1b[31m", message_id="3A0F",
                    timestamp=datetime(2026, 11, 29, 9, 30, 1, 123456, tzinfo=UTC), sender="14155550100",
                    from_me=True, extra={"push_name": "Bo"}),
    PairingWindowClosed(),
    MessageReceipt(chat="14155550100", message_ids=("3EB0A", "3EB0B"), status="read",
                   timestamp=datetime(2026, 11, 29, 9, 31, tzinfo=UTC)),
    MessageReceipt(chat="120363025@g.us", message_ids=("3EB0C",), status="delivered"),
]


def test_every_kind_of_fact_is_covered() -> None:
    assert {type(f) for f in FACTS} == set(get_args(EngineEvent))


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_every_fact_round_trips_in_order() -> None:
    stream = b"".join(frame({"t": "event", "sid": f"ses_{n}", **encode_event(e)}) for n, e in enumerate(FACTS))
    reader = reader_of(stream)
    got = []
    while (message := await read_frame(reader)) is not None:
        got.append(decode_event(message["kind"], message["data"]))
    assert got == FACTS


async def test_a_broken_stream_is_an_error_not_a_fact() -> None:
    whole = frame({"t": "reply", "id": 1, "ok": True, "value": None})
    with pytest.raises(WireError):
        await read_frame(reader_of(whole[:-3]))
    with pytest.raises(WireError):
        await read_frame(reader_of(whole[:2]))
    with pytest.raises(WireError):
        await read_frame(reader_of(HEADER.pack(MAX_FRAME + 1)))
    with pytest.raises(WireError):
        decode_event("NotAFact", {})
    assert await read_frame(reader_of(b"")) is None
