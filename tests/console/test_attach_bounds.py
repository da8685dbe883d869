"""Attach against a broken or hostile server: memory stays bounded, and the console says why.

A small HTTP server on loopback (asyncio, in the test) answers like a watui server until it
does not: an endless ``data:`` line on the event stream, an event that never ends, a bulk
read of endless sessions, an endless line, a JSON answer that never ends or says it is huge.
The client runs in a subprocess with its address space capped (so the code before the caps
fails there with a MemoryError instead of eating the machine), and reports the error it
got, whether its link went down, the most memory Python held meanwhile (tracemalloc's peak:
buffers, parsed sessions) and how much the process's peak RSS grew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from serve_process import REPO

from watui.machine import Status
from watui.models import Session
from watui.remote import Backoff, RemoteService
from watui.widgets.server_link import ServerLink
from watui.widgets.sessions_table import SessionsTable

from .attach_helpers import toasts, wait_for
from .conftest import plain

CHUNK = b"x" * 65536
NOW = "2026-11-21T09:30:00Z"
Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def session_line(n: int) -> bytes:
    session = Session.model_validate({"id": f"ses_{n:012d}", "name": f"s{n}", "owner": "admin",
                                      "status": Status.STOPPED, "created_at": NOW, "updated_at": NOW})
    return session.model_dump_json().encode() + b"\n"


async def endless(writer: asyncio.StreamWriter, first: bytes, chunk: Callable[[int], bytes]) -> None:
    """``first``, then ``chunk(n)`` for n = 0, 1, … for as long as the client reads."""
    writer.write(first)
    n = 0
    while True:
        writer.write(chunk(n))
        n += 1
        await writer.drain()


def head(content_type: str, extra: str = "") -> bytes:
    """A response head without a length: the body runs until the connection closes."""
    return (f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n{extra}\r\n").encode()


def answer(body: Any, status: str = "200 OK") -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
            "connection: close\r\n\r\n").encode() + data


BUDGET_MB = {  # what each cap lets the client hold, with room to spare
    "endless SSE line": 8, "endless SSE event": 8,  # a line, an event: 1 MiB
    "endless bulk answer": 24,  # the 2,000 sessions announced
    "endless bulk answer, no count": 48,  # the cap set here: 5,000 sessions
    "endless bulk line": 8,  # a line: 1 MiB
    "endless JSON answer": 64, "huge declared answer": 8,  # a JSON answer: 32 MiB (refused at once)
}

SCENARIOS: dict[str, dict[str, Writer]] = {
    "endless SSE line": {
        "GET /v1/events": lambda w: endless(w, head("text/event-stream") + b"data: ", lambda n: CHUNK),
    },
    "endless SSE event": {  # short lines, never the blank line that ends the event
        "GET /v1/events": lambda w: endless(w, head("text/event-stream"), lambda n: b"data: " + CHUNK[:1000] + b"\n"),
    },
    "endless bulk answer": {  # valid sessions, one per line, for ever, more than it announced
        "POST /v1/bulk/sessions": lambda w: endless(w, head("application/x-ndjson", "x-total-count: 2000\r\n"),
                                                    session_line),
    },
    "endless bulk answer, no count": {  # the client's own cap (set to 5,000 sessions here)
        "POST /v1/bulk/sessions": lambda w: endless(w, head("application/x-ndjson"), session_line),
    },
    "endless bulk line": {
        "POST /v1/bulk/sessions": lambda w: endless(w, head("application/x-ndjson") + b'{"id": "', lambda n: CHUNK),
    },
    "endless JSON answer": {
        "GET /v1/sessions/ses_1": lambda w: endless(w, head("application/json") + b'{"id": "', lambda n: CHUNK),
    },
    "huge declared answer": {
        "GET /v1/sessions/ses_1": lambda w: endless(
            w, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n",
            lambda n: CHUNK),
    },
}


class HostileServer:
    """Answers ``/v1/health``, a one-session page and an empty event stream like a watui
    server; the routes of its scenario misbehave."""

    def __init__(self, routes: dict[str, Writer]) -> None:
        self.routes = routes
        self.url = ""
        self.hits: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            method, target, _ = request.split(" ", 2)
            route = f"{method} {target.split('?')[0]}"
            self.hits.append(route)
            length = next((int(line.split(":", 1)[1]) for line in request.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            if length:
                await reader.readexactly(length)
            if route in self.routes:
                await self.routes[route](writer)
            elif route == "GET /v1/health":
                writer.write(answer({"version": "0", "engine": "simulated", "restoring": None}))
            elif route == "GET /v1/sessions":
                writer.write(answer({"sessions": [], "total": 0}))
            elif route == "POST /v1/bulk/sessions":
                writer.write(head("application/x-ndjson"))
            elif route == "GET /v1/events":
                writer.write(head("text/event-stream", "x-last-event-id: 0\r\n"))
                await writer.drain()
                await reader.read()  # open until the client goes
            else:
                writer.write(answer({"error": {"code": "NOT_FOUND", "message": "no"}}, "404 Not Found"))
            await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HostileServer]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)


CLIENT = """
import asyncio, json, resource, sys, tracemalloc

resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from watui.remote import Backoff, Limits, RemoteService


def peak():  # the process's peak resident size so far, MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024




async def main(url, scenario, limits):
    service = await RemoteService.open(url, "wk_any", backoff=Backoff(first=5, cap=5), limits=Limits(**limits))
    base = peak()
    tracemalloc.start()
    report = {}
    try:
        if "SSE" in scenario:
            down = asyncio.Event()
            service.link.listen(lambda status: status.stale and down.set())
            subscription = service.subscribe()
            await asyncio.wait_for(down.wait(), 60)
            report["error"] = service.link.status.detail
        else:
            try:
                if "bulk" in scenario:
                    await service.list_sessions(limit=None)
                else:
                    await service.get_session("ses_1")
                report["error"] = None
            except BaseException as exc:
                report["error"] = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        report["stale"] = service.link.status.stale
    finally:
        report["held_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        report["grew_mb"] = peak() - base
        print(json.dumps(report), flush=True)
        await service.aclose()


asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
"""


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_hostile_server_cannot_grow_the_client(scenario: str) -> None:
    limits = {"bulk_sessions": 5000} if "no count" in scenario else {}  # else the defaults
    async with HostileServer(SCENARIOS[scenario]).running() as server:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, server.url, scenario, json.dumps(limits), cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(client.communicate(), 90)
    assert client.returncode == 0, err.decode()[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert "the most this console reads" in report["error"], report  # the link's reason (SSE), or
    assert "SSE" in scenario or report["error"].startswith("ResponseTooLarge: "), report  # the error
    assert report["stale"], "the link is marked down"
    assert report["held_mb"] < BUDGET_MB[scenario], report
    assert report["grew_mb"] < 128, report


async def test_the_console_says_so_and_keeps_running() -> None:
    """In the console: the link line turns red with the reason, the rows are marked, and an
    action is refused; nothing crashes."""
    routes: dict[str, Writer] = {
        "GET /v1/events": lambda w: endless(w, head("text/event-stream") + b"data: ", lambda n: CHUNK),
        "POST /v1/bulk/sessions": lambda w: _one_session(w),
    }
    async with HostileServer(routes).running() as server:
        service = await RemoteService.open(server.url, "wk_any", backoff=Backoff(first=5, cap=5))
        from watui.app import WatuiApp

        app = WatuiApp(service=service, link=service.link, cursor_blink=False, refresh_interval=0.01)
        app.animation_level = "none"
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                await app.ready.wait()
                link = app.screen.query_one(ServerLink)
                await wait_for(pilot, lambda: "unreachable" in plain(link), "the link line says so")
                assert "larger than 1 MiB" in plain(link)
                assert app.screen.query_one(SessionsTable).stale
                await pilot.press("s")
                await wait_for(pilot, lambda: any("server unreachable" in m for _, m in toasts(app)),
                               "the action is refused")
                assert app.is_running
        finally:
            await service.aclose()


async def _one_session(writer: asyncio.StreamWriter) -> None:
    writer.write(head("application/x-ndjson") + session_line(1))
