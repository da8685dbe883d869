"""One error shape for every refusal: ``{"error": {"code", "message", "details"}}``.

Service errors carry their own code and status; FastAPI's validation errors, Starlette's
HTTP errors (unknown route, wrong method) and the body-size cap are mapped onto the same
shape. A catch-all turns a bug into ``500 INTERNAL_ERROR`` without a trace; bad input
never reaches it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watui.errors import WatuiError
from watui.server.schemas import ERROR_CODE_FOR_STATUS
from watui.stores.outages import OUTAGES, unavailable

log = logging.getLogger("watui.server")

MAX_REPORTED_ERRORS = 20
MAX_TEXT = 300


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def validation_details(errors: Any) -> dict[str, Any]:
    """Pydantic's errors without the offending input (it may be huge or secret)."""
    items = [
        {
            "loc": [part if isinstance(part, int) else _clip(part) for part in error.get("loc", ())],
            "msg": _clip(error.get("msg", "")),
            "type": _clip(error.get("type", "")),
        }
        for error in list(errors)[:MAX_REPORTED_ERRORS]
    ]
    return {"errors": items}


def _validation_message(details: dict[str, Any]) -> str:
    errors = details["errors"]
    if any(e["type"] == "json_invalid" for e in errors):
        return "The body is not valid JSON"
    if not errors:
        return "Invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _watui_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WatuiError)
    if exc.status >= 500:
        log.warning("%s %s -> %s %s", request.method, request.url.path, exc.code, exc.message)
    return refusal(exc)


def refusal(exc: WatuiError) -> JSONResponse:
    """A service error as the client sees it: the envelope, its status and its headers."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=exc.headers() or None)


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | pydantic.ValidationError)
    details = validation_details(exc.errors())
    return error_response(422, "VALIDATION_ERROR", _validation_message(details), details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, PayloadTooLarge):  # FastAPI read the body, and wrapped this
        return refusal(exc.__cause__)
    if exc.status_code == 400 and request.method in ("POST", "PATCH", "PUT"):
        # FastAPI's only 400: a body that is not JSON at all (bad UTF-8, nesting too deep).
        # To a client that is the same mistake as malformed JSON.
        return error_response(422, "VALIDATION_ERROR", "The body is not valid JSON",
                              {"errors": [{"loc": ["body"], "msg": "cannot be parsed as JSON",
                                           "type": "json_invalid"}]})
    code = ERROR_CODE_FOR_STATUS.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else "Request refused"
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"No route {request.url.path}"
    elif exc.status_code == 405:
        # Starlette names only the first route that matched the path; list them all.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path.

    Read from the ``(path regex, methods)`` table the app keeps in ``state.route_methods``:
    FastAPI nests included routers, so walking ``app.routes`` would miss them.
    """
    methods: set[str] = set()
    for pattern, route_methods in getattr(request.app.state, "route_methods", ()):
        if pattern.match(request.url.path):
            methods.update(route_methods)
    return sorted(methods)


async def _outage(request: Request, exc: Exception) -> JSONResponse:
    """The database could not be reached (a read, or a lease claim, found it away): a retry
    may succeed, so ``503 STORE_UNAVAILABLE`` with ``Retry-After``, never ``500``."""
    log.warning("%s %s: the store cannot answer: %s", request.method, request.url.path, exc or type(exc).__name__)
    return refusal(unavailable(exc, reading=True))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WatuiError, _watui_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(pydantic.ValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for outage in OUTAGES:  # by class: a handler for Exception itself would close the connection
        app.add_exception_handler(outage, _outage)
    app.add_exception_handler(Exception, _unexpected)


class PayloadTooLarge(WatuiError):
    """A streamed body (no ``Content-Length``: chunked) grew past its cap while the route was
    reading it; raised out of ``receive`` so the route's reading stops and this is the answer
    (FastAPI's own body reading wraps it in a 400, which :func:`_http_error` unwraps)."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}  # the rest of the body is never read


def _counted(receive: Receive, limit: int) -> Receive:
    """``receive``, refusing the request (``413``) once its body grew past ``limit``."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise PayloadTooLarge(f"The body is larger than {limit} bytes", details={"max_body_bytes": limit})
        return message

    return counted


class BodyLimit:
    """Read at most ``max_bytes`` of a request body, else answer ``413 PAYLOAD_TOO_LARGE``.

    The body is read up front (it is small by construction) and handed on in one piece;
    later ``receive`` calls pass through, so streams still notice a client going away.

    ``large_paths`` (POSTs whose path matches: sends and simulates, which may carry a media
    file) take up to ``large_bytes``, streamed through rather than read up front: a declared
    length over it is refused at once, and a chunked body that grows past it is refused as
    soon as it does (:class:`PayloadTooLarge`, out of the route's reading).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, *, large_bytes: int | None = None,
        large_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.large_bytes = large_bytes
        self.large_paths = large_paths

    async def _refuse(self, send: Send, status: int, code: str, message: str, limit: int | None = None) -> None:
        body = json.dumps(error_body(code, message, {"max_body_bytes": limit or self.max_bytes})).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        large = (self.large_bytes is not None and self.large_paths is not None and scope["method"] == "POST"
                 and self.large_paths.match(scope["path"]) is not None)
        limit = self.large_bytes if large and self.large_bytes is not None else self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, 400, "BAD_REQUEST", "Content-Length is not a number")
                    return
                if int(value) > limit:
                    await self._refuse(send, 413, "PAYLOAD_TOO_LARGE",
                                       f"The body is larger than {limit} bytes", limit)
                    return
        if large:
            await self.app(scope, _counted(receive, limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413, "PAYLOAD_TOO_LARGE",
                                   f"The body is larger than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        pending: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()

        await self.app(scope, replay, send)
