"""QR PNGs are drawn only when someone needs one: real servers, real SSE clients.

The server's drawings are this process's :data:`watui.qr_drawings.drawings` (the test servers run in
threads here), so its counters and its memory of drawn PNGs (``peek``) show exactly which codes
were drawn. Sessions rotate their codes fast (the simulated phone and the manager agree on the
codes' life), so a few seconds make many codes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from qr_helpers import scan_png as scan
from server_helpers import api_client, decode, read_until

from watui import qr, qr_drawings
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType
from watui.models import Event
from watui.server import BackgroundServer
from watui.server.streams import FrameCache

Start = Callable[..., BackgroundServer]


def rotating(ttl: float) -> dict[str, Any]:
    """Server options for sessions whose codes last ``ttl`` seconds, for ever."""

    def engine() -> SimulatedEngine:
        return SimulatedEngine(connect_latency=0.01, link_latency=0.02, qr_first_ttl=ttl, qr_next_ttl=ttl,
                               codes_per_attempt=100_000, seed="qr-drawings")

    return {"engine_factory": engine, "qr_first_ttl": ttl, "qr_next_ttl": ttl,
            "qr_codes_per_attempt": 100_000}


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def settled() -> dict[str, int]:
    """Wait until nothing is waiting to be drawn; the counters as they stand then."""
    eventually(qr_drawings.drawings.idle, "the drawing queue to empty")
    return dict(qr_drawings.drawings.counts)


def qr_events(server: BackgroundServer, session_id: str | None = None) -> list[Event]:
    assert server.manager is not None
    store = server.manager.store

    async def read() -> list[Event]:
        out: list[Event] = []
        while True:
            page = await store.read_events(after_id=out[-1].id if out else 0, session_id=session_id,
                                           types=[EventType.QR], limit=500)
            out += page
            if len(page) < 500:
                return out

    return server.call(read)


def create(client: httpx.Client, count: int) -> list[str]:
    ids = []
    for n in range(count):
        created = client.post("/v1/sessions", json={"name": f"s{n:04d}"})
        assert created.status_code == 201, created.text
        ids.append(created.json()["session_id"])
    return ids


def scan_png(data_url: str) -> str:
    return scan(qr.png_of_data_url(data_url))


def test_nobody_watching_draws_nothing(start_server: Start) -> None:
    server = start_server(**rotating(0.3))
    before = settled()
    sessions = 200
    with api_client(server.base_url, server.admin_key) as client:
        create(client, sessions)

        def rotated() -> bool:
            shown: dict[str, int] = {}
            for event in qr_events(server):
                shown[event.session_id] = shown.get(event.session_id, 0) + 1
            return len(shown) == sessions and min(shown.values()) >= 2

        eventually(rotated, "every session to show two codes")
    codes = [event.payload["qr_text"] for event in qr_events(server)]
    assert len(codes) >= 2 * sessions
    assert settled() == before, "no code was drawn, or even asked for"
    assert not any(qr_drawings.drawings.peek(code) for code in codes)


def test_one_subscriber_of_one_session_draws_only_that_sessions_codes(start_server: Start) -> None:
    server = start_server(**rotating(1.0))
    with api_client(server.base_url, server.admin_key) as client:
        watched, *others = create(client, 30)
        before = settled()
        frames: list[dict[str, Any]] = []

        def enough(event: ServerSentEvent) -> bool:
            if event.event == "qr":
                frames.append(decode(event) | {"id": int(event.id)})
            return sum("qr_data" in f for f in frames) >= 3

        read_until(client, f"/v1/sessions/{watched}/stream", enough)
    for frame in frames:
        assert frame["session_id"] == watched
        if "qr_data" in frame:
            assert scan_png(frame["qr_data"]) == frame["qr_text"], "the PNG shows the frame's code"
    after = settled()
    mine = {event.payload["qr_text"] for event in qr_events(server, watched)}
    theirs = {event.payload["qr_text"] for s in others for event in qr_events(server, s)}
    drawn = {code for code in mine | theirs if qr_drawings.drawings.peek(code)}
    assert drawn and drawn <= mine, "only the watched session's codes were drawn"
    assert after["drawn"] - before["drawn"] == len(drawn), "each once"
    # Lossless: every code the stream owed went out, drawn or not.
    received = [f["id"] for f in frames]
    assert received == [e.id for e in qr_events(server, watched) if received[0] <= e.id <= received[-1]]


def test_two_subscribers_of_one_code_share_one_drawing(start_server: Start) -> None:
    server = start_server()  # codes last 60 s: one code for the whole test
    with api_client(server.base_url, server.admin_key) as client:
        session_id = create(client, 1)[0]
        eventually(lambda: qr_events(server, session_id), "the first code")
        code = qr_events(server, session_id)[0].payload["qr_text"]
        before = settled()
        url = f"{server.base_url}/v1/sessions/{session_id}/stream"
        seen: list[dict[str, Any]] = []
        both = threading.Barrier(2)

        def subscriber() -> None:
            with api_client(server.base_url, server.admin_key) as own:
                both.wait(10)
                events = read_until(own, url, lambda e: e.event == "qr")
                seen.append(decode(events[-1]))

        readers = [threading.Thread(target=subscriber) for _ in range(2)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(30)
        as_json = client.get(f"/v1/sessions/{session_id}/qr").json()
        as_png = client.get(f"/v1/sessions/{session_id}/qr", headers={"Accept": "image/png"}).content
    assert [s["qr_text"] for s in seen] == [code, code]
    assert seen[0]["qr_data"] == seen[1]["qr_data"] == as_json["qr_data"] == qr.data_url(as_png)
    assert scan_png(as_json["qr_data"]) == code
    assert settled()["drawn"] - before["drawn"] == 1, "two streams and two GETs, one drawing"


class Gate:
    """Holds the server's drawing still until ``open``."""

    def __init__(self) -> None:
        self.busy = threading.Event()
        self.open = threading.Event()

    def __call__(self, payloads: Sequence[str]) -> list[bytes | None]:
        self.busy.set()
        self.open.wait(60)
        return qr.draw_pngs(payloads)


def test_a_held_drawing_holds_no_event_and_the_stream_stays_lossless(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(**rotating(0.3))
    assert server.manager is not None
    store = server.manager.store
    settled()
    gate = Gate()
    monkeypatch.setattr(qr_drawings.drawings, "_draw_batch", gate)
    start = server.call(store.max_event_id)
    frames: list[tuple[int, str, dict[str, Any]]] = []
    until = [2**63]

    def subscriber() -> None:
        with api_client(server.base_url, server.admin_key) as own:
            read_until(own, "/v1/events", lambda e: int(e.id) >= until[0],
                       headers={"Last-Event-ID": str(start)},
                       on_event=lambda e: frames.append((int(e.id), e.event, decode(e))))

    reader = threading.Thread(target=subscriber)
    reader.start()
    try:
        with api_client(server.base_url, server.admin_key) as client:
            create(client, 5)
            assert gate.busy.wait(30), "the subscriber asked for a drawing"
            # While its drawing is held the subscriber waits; codes keep coming, requests are
            # answered.
            held_at = len(qr_events(server))
            eventually(lambda: len(qr_events(server)) >= held_at + 15, "codes while the drawing is held")
            assert client.get("/v1/health").status_code == 200
            assert client.get("/v1/sessions").json()["total"] == 5
            until[0] = qr_events(server)[-1].id
    finally:
        gate.open.set()
        reader.join(60)
    log = server.call(lambda: store.read_events(after_id=start, limit=10_000))
    ids = [i for i, _, _ in frames]
    assert ids[-1] >= until[0]
    assert ids == [e.id for e in log if e.id <= ids[-1]], "every event, in order, none skipped"
    codes = [(i, data) for i, kind, data in frames if kind == "qr"]
    undrawn = [(i, data) for i, data in codes if "qr_data" not in data]
    assert undrawn, "codes superseded or expired while the drawing was held went out without a PNG"
    for i, data in undrawn:
        expired = datetime.fromisoformat(data["expires_at"]) <= datetime.now(UTC)
        superseded = any(j > i and later["session_id"] == data["session_id"] for j, later in codes)
        assert expired or superseded, data
        assert data["qr_text"], "the code's text is always there"
    for _, data in codes:
        if "qr_data" in data:
            assert scan_png(data["qr_data"]) == data["qr_text"]


async def test_in_one_batch_an_earlier_code_of_a_session_is_sent_without_a_png() -> None:
    """A stream that is behind takes waiting events together: a code that a later one of the
    same session supersedes is not drawn, and its frame still goes out, with ``qr_text``."""
    drawn: list[str] = []

    def draw(payloads: Sequence[str]) -> list[bytes | None]:
        drawn.extend(payloads)
        return qr.draw_pngs(payloads)

    cache = FrameCache(drawings=qr_drawings.Drawings(draw=draw))
    now = datetime.now(UTC)

    def code(event_id: int, session_id: str, text: str) -> Event:
        return Event(id=event_id, type=EventType.QR, session_id=session_id, owner="o", timestamp=now,
                     payload={"qr_text": text, "expires_at": "2999-01-01T00:00:00Z"})

    status = Event(id=2, type=EventType.STATUS, session_id="a", owner="o", timestamp=now,
                   payload={"from": "initializing", "to": "qr_ready", "reason": None})
    batch = [code(1, "a", "a-old"), status, code(3, "b", "b-only"), code(4, "a", "a-new")]
    frames = await cache.frames(batch)
    assert [f.split(b"\n", 1)[0] for f in frames] == [b"id: 1", b"id: 2", b"id: 3", b"id: 4"]
    assert b'"qr_text":"a-old"' in frames[0] and b"qr_data" not in frames[0]
    assert b"qr_data" in frames[2] and b"qr_data" in frames[3]
    assert sorted(drawn) == ["a-new", "b-only"]
    assert await cache.frames(batch) == frames, "encoded once"


def test_the_drawing_process_starts_under_a_console_that_captured_stderr() -> None:
    """A Textual app replaces ``sys.stderr`` with a capture whose ``fileno()`` is -1; the
    drawing process (and multiprocessing's resource tracker it needs) must still start, in a
    fresh interpreter where no tracker runs yet."""
    program = (
        "import io, sys\n"
        "class Capture(io.StringIO):\n"
        "    def fileno(self):\n"
        "        return -1\n"
        "sys.stderr = Capture()\n"
        "from watui.qr_drawings import Drawings\n"
        "drawings = Drawings()\n"
        "drawings.use_process()\n"
        "png = drawings.need('2@drawing-under-a-console').result(timeout=60)\n"
        "assert png is not None and png.startswith(b'\\x89PNG'), png\n"
        "assert drawings._executor is not None, 'fell back to a thread'\n"
        "drawings.close()\n"
        "print('drawn', len(png))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("drawn "), done.stdout
