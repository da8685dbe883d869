"""How both stores write an event's payload (compact JSON), and how the SQLite store writes a
timestamp (ISO 8601 text in UTC, always with microseconds).

orjson does it in a tenth of the standard library's time, and the store encodes every event
on the event loop. What orjson refuses (integers past 64 bits, lone surrogates, keys that are
not strings) goes through the standard library instead, so every payload that was storable
before still is, and reads back the same. Values JSON has no type for (datetimes, dataclasses,
anything else) become ``str(value)`` either way. The one difference: a float NaN or infinity,
which JSON cannot carry, is written as ``null`` (the standard library wrote ``NaN``, which
no JSON reader but Python's accepts).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""Datetimes and dataclasses go to ``default`` (``str``), as with the standard library."""

_stdlib = json.JSONEncoder(separators=(",", ":"), default=str).encode


def payload_json(value: Any) -> str:
    """``value`` as compact JSON text."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return _stdlib(value)


_second: tuple[tuple[int, int, int, int, int, int], str] = ((0, 0, 0, 0, 0, 0), "")
"""The last second :func:`utc_text` formatted, and its text up to the seconds."""


def utc_text(value: datetime) -> str:
    """``value`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (what
    ``isoformat(timespec="microseconds")`` gives, which ``datetime.fromisoformat`` reads back).

    The store writes one per event, and ``isoformat`` costs a microsecond; events come in
    bursts within the same second, so the text up to the seconds is kept from the last call
    (one tuple, swapped whole, so a reader on another thread never sees half of it)."""
    global _second
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    key = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    last = _second
    if last[0] != key:
        last = _second = (key, value.isoformat(timespec="seconds")[:19])
    return f"{last[1]}.{value.microsecond:06d}+00:00"
