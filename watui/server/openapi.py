"""The OpenAPI document, made as strict as the validators behind it.

Some request rules live in pydantic validators that FastAPI cannot see (a phone number's
shape, a webhook secret's prefix, a printable name, a phone number required when linking by
phone). Left out, the document would promise that requests pass which the server refuses;
clients generated from it, and schemathesis, would rightly complain. This adds each rule to
the request schemas as a ``pattern``, a ``format`` or an ``if``/``then``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from watui.models import PHONE_SEPARATORS, WEBHOOK_SECRET_PATTERN, SendMessage

# Python's whitespace (str.isspace, and re's \s), spelled out: JSON Schema regexes are
# ECMA-262, whose \s is a slightly different set.
WHITESPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The characters normalize_phone() drops before checking "+ then 7 to 15 digits".
_SEP = f"[{PHONE_SEPARATORS}]*"
PHONE_PATTERN = rf"^{_SEP}\+?{_SEP}[1-9](?:{_SEP}[0-9]){{6,14}}{_SEP}$"
WEBHOOK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]"
NOT_BLANK_PATTERN = rf"^[^\u0000]*[^{WHITESPACE}\u0000][^\u0000]*$"
"""Some character that is not white space, and no NUL (see ``watui.models.Strict``)."""
NAME_FORMAT = "printable-name"
"""Not blank once trimmed, and every character printable (``str.isprintable``)."""

REQUEST_SCHEMAS = frozenset(
    {"SessionCreate", "SessionUpdate", "SessionSettings", "SettingsPatch", "SendMessage",
     "SimulateRequest", "PairCodeRequest", "MediaInput", "LocationInput", "ContactInput"}
)

_PARTS = ("text", "caption", "media", "location", "contact")
_NEEDS = {"text": "text", "location": "location", "contact": "contact"}
_ALLOWS = {"text": {"text"}, "location": {"location"}, "contact": {"contact"},
           "image": {"caption", "media"}, "video": {"caption", "media"}, "document": {"caption", "media"},
           "audio": {"media"}, "voice": {"media"}, "sticker": {"media"}}


def _message_rules(*, text_required: bool, when: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``if``/``then`` rules of :func:`watui.models.check_message_parts`: each ``type`` with
    the fields it needs and none it cannot carry (``when``: a further condition, such as
    ``action`` being ``message``)."""
    rules = []
    for kind, allowed in _ALLOWS.items():
        needs = [_NEEDS.get(kind, "media")] if kind != "text" or text_required else []
        forbidden = [part for part in _PARTS if part not in allowed]
        cond: dict[str, Any] = {"properties": {"type": {"const": kind}}, "required": ["type"]}
        if kind == "text":
            cond = {"anyOf": [cond, {"not": {"required": ["type"]}}]}
        if when is not None:
            cond = {"allOf": [cond, when]}
        then: dict[str, Any] = {"not": {"anyOf": [_given(part) for part in forbidden]}}
        if needs:
            then["required"] = needs
            then["properties"] = {part: _NOT_NULL for part in needs}
        rules.append({"if": cond, "then": then})
    return rules


_NOT_NULL: dict[str, Any] = {"not": {"type": "null"}}


def _given(part: str) -> dict[str, Any]:
    """``part`` is there and not null (null is the same as absent to the validators)."""
    return {"required": [part], "properties": {part: _NOT_NULL}}


def _string_branch(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The ``{"type": "string", …}`` part of a property, nullable or not."""
    if prop.get("type") == "string":
        return prop
    for option in prop.get("anyOf", ()):
        if option.get("type") == "string":
            branch: dict[str, Any] = option
            return branch
    return None


_RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    "phone_number": lambda s: s.update(pattern=PHONE_PATTERN),
    "to": lambda s: s.update(pattern=PHONE_PATTERN),
    "chat": lambda s: s.update(pattern=PHONE_PATTERN),
    "phone": lambda s: s.update(pattern=PHONE_PATTERN),
    "webhook_secret": lambda s: s.update(pattern=WEBHOOK_SECRET_PATTERN),
    "webhook_url": lambda s: s.update(pattern=WEBHOOK_URL_PATTERN),
    "name": lambda s: s.update(format=NAME_FORMAT),
}


def tighten(document: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name in REQUEST_SCHEMAS & schemas.keys():
        properties: dict[str, Any] = schemas[name].get("properties", {})
        for field, rule in _RULES.items():
            branch = _string_branch(properties.get(field, {}))
            if branch is not None:
                rule(branch)
        if name == "SendMessage" and "text" in properties:
            branch = _string_branch(properties["text"])
            if branch is not None:
                branch["pattern"] = NOT_BLANK_PATTERN
    if "SendMessage" in schemas:
        schemas["SendMessage"]["allOf"] = _message_rules(text_required=True)
    if "SimulateRequest" in schemas:
        message = {"properties": {"action": {"const": "message"}}, "required": ["action"]}
        rules = _message_rules(text_required=False, when=message)
        rules.append({"if": {"not": message}, "then": {"not": {"anyOf": [
            _given(part) for part in ("caption", "media", "location", "contact")]}}})
        schemas["SimulateRequest"]["allOf"] = rules
    if "MediaInput" in schemas:
        data, url = _given("data"), _given("url")
        schemas["MediaInput"]["oneOf"] = [{"allOf": [data, {"not": url}]}, {"allOf": [url, {"not": data}]}]
    create = schemas.get("SessionCreate")
    if create is not None:
        # Linking by phone (and starting now, the default) needs the number.
        create["if"] = {
            "properties": {"link_method": {"const": "phone"}, "start": {"const": True}},
            "required": ["link_method"],
        }
        create["then"] = {"required": ["phone_number"],
                          "properties": {"phone_number": {"type": "string"}}}
    return document


def _with_send_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Add :class:`SendMessage` and the models it uses to the components: the send route
    reads its body itself (JSON or multipart), so FastAPI does not list them."""
    _, top = models_json_schema([(SendMessage, "validation")], ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    return document


def install(app: FastAPI) -> None:
    """Serve the tightened document at ``/openapi.json`` (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = tighten(_with_send_schemas(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
