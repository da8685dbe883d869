"""The server's error envelope, turned back into the :mod:`watui.errors` classes.

A refusal over HTTP must read exactly like the same refusal in-process: the console shows
``exc.message``, which here is the server's own ``error.message``. Codes map to classes by
their ``code`` attribute, so a class added to :mod:`watui.errors` (or anywhere else, as a
``WatuiError`` subclass) is recognised without a table to keep in step.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from watui.errors import InvalidTransition, WatuiError


class ServerUnreachable(WatuiError):
    """The server could not be reached (refused, reset, timed out): no answer to read."""

    code = "SERVER_UNREACHABLE"
    status = 503


class BadResponse(WatuiError):
    """The server answered, but not with anything this client can use (not JSON, not an event
    stream, compressed without being asked): a broken server, or not a watui server."""

    code = "BAD_RESPONSE"
    status = 502


class ResponseTooLarge(BadResponse):
    """An answer past one of the client's caps (:class:`watui.remote.bounded.Limits`)."""

    code = "RESPONSE_TOO_LARGE"


class RemoteError(WatuiError):
    """A refusal whose code no local class carries: code and status are the server's."""

    def __init__(self, code: str, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.status = status


CLIENT_SIDE: frozenset[type[WatuiError]] = frozenset(
    {WatuiError, RemoteError, ServerUnreachable, BadResponse, ResponseTooLarge})
"""Classes this client raises itself: never what a server's code is taken to mean."""


def _classes_by_code() -> dict[str, type[WatuiError]]:
    found: dict[str, type[WatuiError]] = {}
    pending: list[type[WatuiError]] = [WatuiError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls not in CLIENT_SIDE:
            found.setdefault(cls.code, cls)
    return found


def error_from_body(status: int, body: Any) -> WatuiError:
    """The error for a ``{"error": {"code", "message", "details"}}`` body (or anything else)."""
    info: Any = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("code"), str):
        return RemoteError(f"HTTP_{status}", status, f"The server answered HTTP {status} without an error message")
    code: str = info["code"]
    message = str(info.get("message") or code)
    raw_details = info.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    cls = _classes_by_code().get(code)
    if cls is None:
        return RemoteError(code, status, message, details)
    # Some classes build their own message from arguments; the server's words win here.
    error = cls.__new__(cls)
    WatuiError.__init__(error, message, details=details)
    if isinstance(error, InvalidTransition):
        error.from_status = str(details.get("status", ""))
        error.trigger = str(details.get("trigger", ""))
    return error


def error_from_response(response: httpx.Response, content: bytes) -> WatuiError:
    """A refusal, from its status and its body (read with a cap: :mod:`watui.remote.bounded`)."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    error = error_from_body(response.status_code, body)
    if isinstance(error, RemoteError) and error.code.startswith("HTTP_"):
        error.message = f"The server answered HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return error


def unreachable(url: str, exc: Exception) -> ServerUnreachable:
    """A readable sentence for a transport failure ("connection refused", "timed out", …)."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        reason = "no answer in time"
    elif isinstance(exc, httpx.ConnectError):
        reason = f"cannot connect ({reason})"
    return ServerUnreachable(f"Cannot reach the watui server at {url}: {reason}", details={"url": url})
