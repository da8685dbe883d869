"""Addresses that carry secrets: webhook secrets, proxy URLs (checked, masked) and scrubbing a
password out of an engine's text."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import quote, unquote

from pydantic import ValidationInfo

from watui.models.base import WEBHOOK_SECRET_MAX_BYTES, WEBHOOK_SECRET_MIN_BYTES

_B64 = "[A-Za-z0-9+/]"
WEBHOOK_SECRET_PATTERN = (
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)
"""``whsec_`` + padded base64 of 24 to 64 bytes (the OpenAPI document carries it too)."""
WEBHOOK_SECRET_RE = re.compile(WEBHOOK_SECRET_PATTERN)


def _check_secret(value: str | None, info: ValidationInfo) -> str | None:
    """A secret the signer can use: ``whsec_`` + base64 of 24–64 bytes. Anything else would be
    stored, then fail every delivery. (A value already stored is loaded as it is.)"""
    if value is None or (isinstance(info.context, dict) and info.context.get("stored")):
        return value
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True) if value.startswith("whsec_") else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not WEBHOOK_SECRET_RE.fullmatch(value) or not WEBHOOK_SECRET_MIN_BYTES <= len(raw) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"webhook_secret must be whsec_ followed by the base64 of {WEBHOOK_SECRET_MIN_BYTES} "
            f"to {WEBHOOK_SECRET_MAX_BYTES} bytes"
        )
    return value


def mask_url(url: object) -> str:
    """A URL with its password (``user:pw@``) replaced by ``***``: for logs and listings."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostport}{slash}{tail}"


PROXY_SCHEMES = ("socks5", "http", "https")
PROXY_RULES = (
    "`socks5://[user:pass@]host:port`, `http://[user:pass@]host:port` or"
    " `https://[user:pass@]host:port` (user and password percent-encoded): every connection of"
    " the session goes through it. The password is masked (`user:***@`) in every answer but the"
    " one that set it. null: `WATUI_PROXY` if the server has one, else direct."
)
"""The ``description`` of ``settings.proxy`` (the OpenAPI schema)."""
_USERINFO = r"A-Za-z0-9._~!$&'()*+,;=%-"
"""What a proxy's user name and password may hold as typed (RFC 3986's unreserved and
sub-delimiter characters, and ``%`` for the rest, percent-encoded)."""
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
PROXY_PATTERN = (
    rf"^(?:[Ss][Oo][Cc][Kk][Ss]5|[Hh][Tt][Tt][Pp][Ss]?)://(?:[{_USERINFO}]+(?::[{_USERINFO}]*)?@)?"
    rf"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):{_PORT}/?$"
)
"""A proxy address, exactly as the validator takes it (the OpenAPI schema carries it too);
``[0-9]``, not ``\\d``, which Python reads as any script's digits."""
_PROXY_RE = re.compile(PROXY_PATTERN)


def check_proxy(value: str | None) -> str | None:
    """A proxy address an engine can dial: ``socks5``, ``http`` or ``https``, a host name (or
    address, IPv6 in brackets) and a port from 1 to 65535, maybe ``user[:password]@`` (other
    characters than :data:`_USERINFO`'s percent-encoded), nothing after the port but ``/``.
    The scheme is lower-cased and a trailing ``/`` dropped. (The masked form, ``user:***@``, is
    an address too, so a session read back from the API validates.)"""
    if value is None:
        return None
    if not _PROXY_RE.fullmatch(value):
        raise ValueError(_why_not_a_proxy(value))
    scheme, _, rest = value.partition("://")
    return f"{scheme.lower()}://{rest.removesuffix('/')}"


def _why_not_a_proxy(value: str) -> str:
    """What is wrong with ``value`` as a proxy address, in words."""
    form = "socks5://[user:pass@]host:port or http(s)://[user:pass@]host:port"
    scheme, sep, rest = value.partition("://")
    if not sep:
        return f"proxy must be a URL: {form}"
    if scheme.lower() not in PROXY_SCHEMES:
        return f"proxy must be {form} (got scheme {scheme.lower()!r})"
    authority = rest.removesuffix("/")
    if any(ch in authority for ch in "/?#"):
        return "proxy must be only scheme://[user:pass@]host:port, no path, query or fragment"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "proxy must not contain spaces or control characters"
    userinfo, at, hostport = authority.rpartition("@")
    if at and not userinfo.split(":", 1)[0]:
        return "proxy has a password but no user name (user:pass@host:port)"
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    if not colon or not port:
        return "proxy must give a port: scheme://[user:pass@]host:port (1 to 65535)"
    if not re.fullmatch(_PORT, port):
        return "proxy port must be a number from 1 to 65535"
    if not host:
        return "proxy must name a host: scheme://[user:pass@]host:port"
    if at and not re.fullmatch(f"[{_USERINFO}]+(?::[{_USERINFO}]*)?", userinfo):
        return "proxy user name and password must be percent-encoded (@ as %40, : in a user name as %3A)"
    return "proxy host must be a host name, an IPv4 address or an [IPv6] address (a name in ASCII: punycode)"


def _check_proxy_field(value: str | None, info: ValidationInfo) -> str | None:
    if isinstance(info.context, dict) and info.context.get("stored"):
        return value  # checked when it was set
    return check_proxy(value)


def scrub_secret(text: str, url: str | None) -> str:
    """``text`` with ``url``'s password (as given, decoded or percent-encoded) replaced by ``***``:
    for messages an engine wrote that may quote its proxy address (a dial error)."""
    if not url or not text:
        return text
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    password = userinfo.split(":", 1)[1] if at and ":" in userinfo else ""
    if not password:
        return text
    user = userinfo.split(":", 1)[0]
    for secret in {password, unquote(password), quote(unquote(password), safe="")}:
        text = text.replace(f"{user}:{secret}@", f"{user}:***@")
        if len(secret) >= 3:  # "a" would blank every "a"; anything longer is the secret
            text = text.replace(secret, "***")
    return text
