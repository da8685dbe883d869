"""How both stores write an event's payload: compact JSON.

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
