"""Reading a server's answers with a ceiling, so a broken or hostile server cannot grow the
console without bound.

httpx reads a whole body into memory, and splits lines (NDJSON, SSE) by buffering until the
next newline: one endless ``data:`` line, or a bulk answer of millions of lines, would hold
gigabytes. Here every answer is read in raw chunks against :class:`Limits`: one JSON body,
one line, one SSE event, one bulk answer. Going past one raises :class:`ResponseTooLarge`
(the connection is dropped at once), a :class:`~watui.errors.WatuiError` that the console
shows like any refusal and that marks the link broken.

Bodies are asked for and read uncompressed (``Accept-Encoding: identity``): a compressed
answer would be inflated before any cap could see it, so one is refused before it is read
(``aiter_bytes`` then hands out the bytes as they came).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from httpx_sse import ServerSentEvent

from watui.remote.errors import BadResponse, ResponseTooLarge

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The most the client holds of one answer. The defaults are far above what a working
    server sends (a page of events is tens of kilobytes, a QR event a few, a bulk read of
    10,000 sessions about 15 MB) and far below what would hurt the machine."""

    body_bytes: int = 32 * MiB
    """One JSON answer."""
    line_bytes: int = 1 * MiB
    """One line: a session of the bulk read, a line of the event stream."""
    event_bytes: int = 1 * MiB
    """One event of the event stream, its lines together."""
    bulk_bytes: int = 256 * MiB
    """One bulk read (``POST /v1/bulk/sessions``), every line together."""
    bulk_sessions: int = 100_000
    """Sessions in one bulk read."""


def size(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n:,} bytes"


def too_large(url: str, what: str, cap: int) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"The server at {url} sent {what} larger than {size(cap)}, the most this console reads: "
        "dropped (a broken server, or not a watui server)",
        details={"url": url, "limit_bytes": cap},
    )


def check_encoding(response: httpx.Response, url: str) -> None:
    """Refuse a compressed answer: inflating it would get round every cap."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadResponse(
            f"The server at {url} sent a compressed answer ({encoding}) that was not asked for",
            details={"url": url, "content_encoding": encoding[:40]},
        )


async def read_body(response: httpx.Response, cap: int, url: str) -> bytes:
    """The whole body, refusing one longer than ``cap`` bytes (declared or actual)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large(url, "an answer", cap)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            raise too_large(url, "an answer", cap)
    return bytes(body)


async def read_lines(response: httpx.Response, limits: Limits, url: str) -> AsyncIterator[bytes]:
    """NDJSON: each line (without its newline), none past ``line_bytes``, all of them
    together not past ``bulk_bytes``."""
    buffer = bytearray()
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limits.bulk_bytes:
            raise too_large(url, "a bulk answer", limits.bulk_bytes)
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end - start > limits.line_bytes:
                raise too_large(url, "a line", limits.line_bytes)
            yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
        if len(buffer) > limits.line_bytes:
            raise too_large(url, "a line", limits.line_bytes)
    if buffer:
        yield bytes(buffer)


_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEDecoder:
    """Server-Sent Events from raw bytes (the WHATWG rules: ``\\r\\n``, ``\\r`` or ``\\n``
    ends a line; a blank line ends an event; ``:`` starts a comment; the last ``id`` sticks),
    holding at most one line of ``max_line`` bytes and one event of ``max_event``."""

    def __init__(self, url: str, max_line: int, max_event: int) -> None:
        self.url = url
        self.max_line = max_line
        self.max_event = max_event
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._last_id = ""
        self._retry: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held now: the unfinished line and the event being read."""
        return len(self._buffer) + self._size

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[ServerSentEvent] = []
        start = 0
        while (match := _LINE_END.search(buffer, start)) is not None:
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # maybe the first half of "\r\n": wait for the next chunk
            if match.start() - start > self.max_line:
                raise too_large(self.url, "an event-stream line", self.max_line)
            event = self._line(bytes(buffer[start : match.start()]))
            if event is not None:
                events.append(event)
            start = match.end()
        del buffer[:start]
        if len(buffer) > self.max_line:
            raise too_large(self.url, "an event-stream line", self.max_line)
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        if raw.startswith(b":"):
            return None  # a comment: the server's ping
        self._size += len(raw)
        if self._size > self.max_event:
            raise too_large(self.url, "an event", self.max_event)
        line = raw.decode("utf-8", errors="replace")
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry, self._size = [], "", None, 0
        if not data:  # no data line: nothing to hand out (the rules say so too)
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self._last_id, retry=retry)
