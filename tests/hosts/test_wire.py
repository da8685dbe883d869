"""The frames between watui and an engine host: every engine fact survives the trip."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from typing import get_args

import pytest

from watui.engines.base import (
    Contact,
    EngineEvent,
    IncomingMessage,
    Location,
    LoggedOut,
    MediaFile,
    MessageReceipt,
    Outgoing,
    PairingWindowClosed,
    PairSuccess,
    PhoneAction,
    QrCodeIssued,
    ReceivedMedia,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)
from watui.engines.hosts.wire import (
    HEADER,
    MAX_FRAME,
    WireError,
    decode_action,
    decode_event,
    decode_outgoing,
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


MEDIA_FACTS: list[EngineEvent] = [
    IncomingMessage(chat="14155550100", text="look", message_id="3A10", type="image",
                    timestamp=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
                    media=ReceivedMedia("image/jpeg", 2048, "ab" * 32, "p.jpg", "/data/media/ses_1/dl_1")),
    IncomingMessage(chat="14155550100", text="", message_id="3A11", type="voice",
                    timestamp=datetime(2026, 12, 7, 9, 1, tzinfo=UTC),
                    media=ReceivedMedia("audio/ogg; codecs=opus", 10, "", error="download failed: 404")),
    IncomingMessage(chat="14155550100", text="", message_id="3A12", type="location",
                    timestamp=datetime(2026, 12, 7, 9, 2, tzinfo=UTC),
                    location=Location(52.52, 13.405, "Berlin", None)),
    IncomingMessage(chat="14155550100", text="", message_id="3A13", type="contact",
                    timestamp=datetime(2026, 12, 7, 9, 3, tzinfo=UTC), contact=Contact("Ana", "491511234567")),
]


async def test_messages_of_every_type_cross_with_their_nested_parts() -> None:
    stream = b"".join(frame({"t": "event", "sid": "ses_1", **encode_event(e)}) for e in MEDIA_FACTS)
    reader = reader_of(stream)
    got = []
    while (message := await read_frame(reader)) is not None:
        got.append(decode_event(message["kind"], message["data"]))
    assert got == MEDIA_FACTS
    assert isinstance(got[0], IncomingMessage) and isinstance(got[0].media, ReceivedMedia)


def test_send_and_phone_actions_carry_files_by_path() -> None:
    outgoing = Outgoing("document", "the report", MediaFile("/data/media/.staging/in_1", "application/pdf",
                                                            12_000_000, "r.pdf"))
    wire = json.loads(json.dumps(dataclasses.asdict(outgoing)))
    assert decode_outgoing(wire) == outgoing
    assert len(json.dumps(wire)) < 200  # a 12 MB file crosses as its name
    for message in (Outgoing("location", location=Location(1.5, 2.5)), Outgoing("contact", contact=Contact("B", "1"))):
        assert decode_outgoing(json.loads(json.dumps(dataclasses.asdict(message)))) == message
    action = PhoneAction("message", chat="14155550100", text="hi", type="sticker",
                         media=MediaFile("/tmp/s.webp", "image/webp", 800))
    assert decode_action(json.loads(json.dumps(dataclasses.asdict(action)))) == action
