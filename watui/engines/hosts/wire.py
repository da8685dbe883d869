"""The wire between watui and an engine host: length-prefixed JSON frames over a pipe.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. watui sends calls, the host
answers each with a reply carrying the same ``id`` and sends engine facts as they happen::

    watui -> host   {"t": "call", "id": 7, "op": "connect", "sid": "ses_…", "args": {}}
    host -> watui   {"t": "reply", "id": 7, "ok": true, "value": null}
    host -> watui   {"t": "reply", "id": 8, "ok": false, "refused": true, "error": "not connected"}
    host -> watui   {"t": "event", "sid": "ses_…", "kind": "QrCodeIssued", "data": {"code": "2@…"}}

Facts are the dataclasses of :mod:`watui.engines.base`, sent field by field (``datetime`` as
ISO 8601, tuples as lists). One pipe carries both replies and facts, so a session's facts arrive in the order
the engine reported them, and before the reply to any call made after them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
from datetime import datetime
from typing import Any

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
    SessionOptions,
)

SPEC_ENV = "WATUI_ENGINE_HOST_SPEC"
"""The environment variable that carries the engine spec (JSON) to a host process."""

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
"""A frame larger than this is a broken peer, not a message."""

EVENT_KINDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        QrCodeIssued,
        PairSuccess,
        SessionConnected,
        SessionDisconnected,
        LoggedOut,
        SessionError,
        PairingWindowClosed,
        IncomingMessage,
        MessageReceipt,
    )
}


class WireError(RuntimeError):
    """The peer sent something that is not a frame of this protocol."""


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or ``None`` at a clean end of the stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WireError("the stream ended inside a frame header") from None
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes is over the limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise WireError("the stream ended inside a frame") from None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise WireError("a frame must hold a JSON object")
    return message


def encode_options(options: SessionOptions | None) -> dict[str, Any] | None:
    """A session's options as the ``open`` call carries them (None: the engine's defaults)."""
    return None if options is None else dataclasses.asdict(options)


def decode_options(data: dict[str, Any] | None) -> SessionOptions | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise WireError("session options must be a JSON object")
    known = {f.name for f in dataclasses.fields(SessionOptions)}
    return SessionOptions(**{k: v for k, v in data.items() if k in known})


def encode_event(event: EngineEvent) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)  # a message's media, location or contact
        data[f.name] = value
    return {"kind": type(event).__name__, "data": data}


_NESTED: dict[str, type[Any]] = {"location": Location, "contact": Contact, "media": MediaFile}
"""The dataclass fields of facts and calls, sent as JSON objects (files go by path: see
:class:`watui.engines.base.MediaFile`); an incoming message's ``media`` is a ReceivedMedia."""


def _nested(cls: type[Any], name: str, value: Any) -> Any:
    if not isinstance(value, dict) or name not in _NESTED:
        return value
    kind = ReceivedMedia if (cls is IncomingMessage and name == "media") else _NESTED[name]
    return kind(**value)


def decode_outgoing(data: dict[str, Any]) -> Outgoing:
    """A ``send`` call's message (sent as ``dataclasses.asdict``)."""
    return Outgoing(**{name: _nested(Outgoing, name, value) for name, value in data.items()})


def decode_action(data: dict[str, Any]) -> PhoneAction:
    """A ``play_phone`` call's action (sent as ``dataclasses.asdict``)."""
    return PhoneAction(**{name: _nested(PhoneAction, name, value) for name, value in data.items()})


def decode_event(kind: str, data: dict[str, Any]) -> EngineEvent:
    cls = EVENT_KINDS.get(kind)
    if cls is None:
        raise WireError(f"unknown engine fact {kind!r}")
    values = dict(data)
    for name, value in data.items():
        if name == "timestamp" and isinstance(value, str):
            values[name] = datetime.fromisoformat(value)
        elif isinstance(value, list):
            values[name] = tuple(value)
        elif isinstance(value, dict):
            values[name] = _nested(cls, name, value)
    event: EngineEvent = cls(**values)
    return event
