"""What every model shares: time stamps, phone numbers, session names, and :class:`Strict`,
the base of what callers send (no unknown field, no NUL character)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(ts: datetime) -> str:
    """UTC, ISO 8601 with microseconds, as every event timestamp is written."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


PHONE_SEPARATORS = " ().-"
"""What people type between digits; dropped before the check. (The server's OpenAPI pattern
is built from this, so the two cannot drift.)"""
PHONE_SEPARATORS_RE = re.compile(f"[{PHONE_SEPARATORS}]")  # "-" last: a literal in a class
PHONE_RE = re.compile(r"^\+?[1-9][0-9]{6,14}$")  # ASCII digits only: "\d" takes any script's


def normalize_phone(value: str) -> str:
    """E.164 digits without the plus: what WhatsApp uses as a JID's user part."""
    cleaned = PHONE_SEPARATORS_RE.sub("", value or "")
    if not PHONE_RE.fullmatch(cleaned):
        raise ValueError(
            "phone number must be in international format, 7 to 15 digits, e.g. +14155550123"
        )
    return cleaned.lstrip("+")


PhoneNumber = Annotated[str, AfterValidator(normalize_phone)]
WEBHOOK_SECRET_MIN_BYTES, WEBHOOK_SECRET_MAX_BYTES = 24, 64

def _check_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isprintable():
        raise ValueError("name must be printable and not blank")
    return value


def name_key(name: str) -> str:
    """What session names are compared by: the name after Unicode NFKC normalisation and case
    folding (then NFKC again, which folding can undo). ``café`` typed precomposed (NFC) or with
    a combining accent (NFD), ``Shop`` and fullwidth ``ｓｈｏｐ`` are each one name with
    ``café``/``shop``. A session keeps and shows its name as it was given."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


_NOT_PRINTABLE = (
    r"\u0000-\u001f\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    r"\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ud800-\uf8ff"
    r"\ufeff\ufff9-\ufffb"
)
"""The assigned characters of the Basic Multilingual Plane that ``str.isprintable`` refuses
(controls, format characters, separators but the space, surrogates, private use), as
``\\uXXXX`` ranges that ECMA-262 (JSON Schema) and Python's ``re`` both read."""
_WHITE_SPACE = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028-\u2029\u202f\u205f\u3000"
)
"""What ``str.strip()`` trims (``str.isspace``), spelled out the same way."""
NAME_PATTERN = (
    f"^[{_WHITE_SPACE}]*[^{_NOT_PRINTABLE}]*[^{_NOT_PRINTABLE}{_WHITE_SPACE}][^{_NOT_PRINTABLE}]*"
    f"[{_WHITE_SPACE}]*$"
)
"""A session name in the OpenAPI schema: once trimmed, not blank and printable. A name this
refuses is refused (``422 VALIDATION_ERROR``); the validator, ``str.isprintable``, also refuses
the few characters a pattern cannot name for every Unicode version (unassigned ones, and
those outside the Basic Multilingual Plane that are not printable)."""

NAME_RULES = (
    "Printable characters only (no control, format, surrogate, private-use or unassigned"
    " characters, and no separator but the plain space), not blank; surrounding white space is"
    " trimmed. Unique among the owner's sessions after Unicode NFKC normalisation and case"
    " folding (`Shop`, `shop` and fullwidth `ｓｈｏｐ` are one name; so are `café` precomposed"
    " and with a combining accent): a name taken that way is `409 CONFLICT`. The name is kept"
    " and shown as given."
)
"""The ``description`` of the ``name`` field of a create and an update (the OpenAPI schema)."""


NO_NUL = "^[^\\u0000]*$"
"""The JSON Schema ``pattern`` of text that :class:`Strict` accepts (no U+0000)."""


def _no_nul_in_schema(schema: dict[str, Any]) -> None:
    """Say in the OpenAPI schema what :meth:`Strict._no_nul` enforces: each text property
    without a pattern of its own gets :data:`NO_NUL`."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and not ({"pattern", "format", "enum", "const"} & node.keys()):
                node["pattern"] = NO_NUL
            for key in ("anyOf", "oneOf", "allOf"):
                for option in node.get(key, ()):
                    visit(option)
            visit(node.get("items"))

    for prop in schema.get("properties", {}).values():
        visit(prop)


class Strict(BaseModel):
    """What callers send: unknown fields are refused, and so is a NUL character in any text.

    U+0000 is never meaningful in a name, a message or a secret, and PostgreSQL ``text`` cannot
    store it (see :mod:`watui.stores.postgres`): refusing it here (``422 VALIDATION_ERROR``)
    tells the caller, where silently changing their text would not. The OpenAPI schema says
    so too (each text property's ``pattern``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_nul_in_schema)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters (U+0000)")
        return value
