"""A webhook receiver for the tests: a small asyncio HTTP/1.1 server on 127.0.0.1 whose answer
the test chooses per request (503, 204, 400, a slow answer), which can be "down" (nothing
listening: connection refused), and which records every request with the time it arrived."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers what ``respond`` says."""

    port: int
    respond: Callable[[Request, int], int] = lambda request, n: 204
    delay: Callable[[Request], float] = lambda request: 0.0
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None

    @classmethod
    def reserve(cls, **kwargs: Any) -> Receiver:
        """A receiver on a free port, not listening yet (so connections are refused)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return cls(port, **kwargs)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(path, headers, body)
                self.requests.append(request)
                pause = self.delay(request)
                if pause:
                    await asyncio.sleep(pause)
                status = self.respond(request, len(self.requests))
                text = b"" if status == 204 else b"nope"
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(text)}\r\n\r\n".encode() + text
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def by_event(self) -> dict[int, list[Request]]:
        out: dict[int, list[Request]] = {}
        for r in self.requests:
            out.setdefault(r.json()["id"], []).append(r)
        return out



@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        receiver = Receiver.reserve(**kwargs)
        made.append(receiver)
        return receiver

    yield make
    for r in made:
        await r.stop()
