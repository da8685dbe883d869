"""The real engine offline: real neonize dialling a loopback proxy that accepts and never answers.

``HTTPS_PROXY`` points the engine at :class:`SilentProxy` (``test_neonize_proxy``, beside the
SOCKS5 and HTTP proxies the per-session proxy tests use), as it would point it at a proxy on a
dead network: every dial reaches it and hangs. The proxy records when each connection opened
and closed, so the tests see the dials begin (starts overlap: no attempt holds the start lock
while it dials), end when their session is closed, and the words a failure is told in. Then the
same through the server: ``POST /pair-code`` answers within 2 s, and a stop racing it answers
409. No test sleeps for luck: each waits on the proxy's record or the store, with deadlines.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_recorder import Recorder

from watui.config import Settings
from watui.engines.base import SessionError
from watui.engines.hosts import HostedEngine
from watui.engines.neonize import NeonizeEngine
from watui.engines.neonize.go import _StartGate
from watui.engines.neonize.mapping import connect_error, dial_error_words
from watui.engines.neonize.relay import route_for
from watui.engines.simulated import SimulatedEngine
from watui.engines.spec import EngineSpec
from watui.errors import EngineFailure
from watui.machine import EventType, Status
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate
from watui.remote import RemoteService
from watui.server import BackgroundServer

from test_neonize_proxy import SilentProxy  # isort: skip


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentProxy]:
    silent = SilentProxy()
    monkeypatch.setenv("HTTPS_PROXY", silent.url)  # what whatsmeow (and the relay) honour
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        yield silent
    finally:
        silent.close()


def run_threads(session_ids: list[str]) -> list[str]:
    """The threads of these sessions' Neonize() calls still alive."""
    names = {f"watui-neonize-{sid}" for sid in session_ids}
    return [t.name for t in threading.enumerate() if t.name in names and t.is_alive()]


# --------------------------------------------------------------------------- in one process


async def test_starts_in_one_process_dial_at_once_and_a_close_cuts_each_dial(
    tmp_path: Path, proxy: SilentProxy
) -> None:
    """Thirty attempts dial together: none holds the start lock while its dial hangs (it used
    to, for 3 s each: 90 s for these). Closing their sessions cuts every dial within 2 s."""
    engine = NeonizeEngine(connect_timeout=30)
    sessions = [
        engine.session(f"c{i}", Recorder(), auth_path=tmp_path / "auth" / f"c{i}.db") for i in range(30)
    ]
    started = time.monotonic()
    await asyncio.gather(*(s.connect() for s in sessions))
    await proxy.until(lambda: len(proxy.opened) == 30, "thirty dials", timeout=25)
    assert proxy.opened[-1] - started < 25
    assert not _StartGate.lock.locked()  # dialling, all of them, and nobody holds the lock

    closing = time.monotonic()
    await asyncio.gather(*(s.close() for s in sessions))
    await proxy.until(lambda: len(proxy.closed) == 30, "every dial to be cut", timeout=10)
    assert max(proxy.closed) - closing < 2.0
    assert run_threads([s.session_id for s in sessions]) == []  # each call returned: none lingers
    await engine.aclose()


async def test_a_silent_proxy_fails_in_words_and_the_watchdog_cuts_the_dial(
    tmp_path: Path, proxy: SilentProxy
) -> None:
    engine = NeonizeEngine(connect_timeout=1.0)
    report = Recorder()
    session = engine.session("w", report, auth_path=tmp_path / "w.db")
    await session.connect()
    event = await report.next()
    assert isinstance(event, SessionError) and event.code == "connect_timeout"
    assert event.message == (
        f"cannot reach WhatsApp: connection timed out through the proxy at 127.0.0.1:{proxy.port}: "
        "it accepted the connection and sent nothing in 1 s"
    )
    assert event.details == "no answer from WhatsApp within 1 s (connect timeout)"
    # The attempt that timed out does not keep its socket for Go's own minute.
    await proxy.until(lambda: len(proxy.closed) == 1, "the timed-out dial to be cut", timeout=5)
    await session.close()
    await engine.aclose()


async def test_a_proxy_whose_name_does_not_resolve_is_said_so(tmp_path: Path) -> None:
    engine = NeonizeEngine(proxy="http://user:secret@proxy.invalid:3128")  # .invalid never resolves
    report = Recorder()
    session = engine.session("dns", report, auth_path=tmp_path / "dns.db")
    await session.connect()
    event = await report.next()
    assert isinstance(event, SessionError) and event.code == "connect_failed"
    assert event.message == "cannot reach WhatsApp: the proxy's name proxy.invalid does not resolve"
    assert event.details and "failed to dial whatsapp web websocket" in event.details
    assert "secret" not in event.message + event.details  # the proxy's password never shows
    await session.close()


async def test_starts_are_bounded_by_the_restore_concurrency_not_by_a_lock(
    tmp_path: Path, proxy: SilentProxy
) -> None:
    """A restore of eight sessions, four at a time: the first four dial together, and the
    fifth only once one of them had its outcome (a connect timeout)."""
    timeout = 3.0

    async def open_manager() -> SessionManager:
        settings = Settings(data_dir=tmp_path, engine="neonize", sqlite_synchronous="OFF",
                            restore_concurrency=4)
        return await SessionManager.open(settings, engine=NeonizeEngine(connect_timeout=timeout))

    manager = await open_manager()
    admin = manager.service(Caller.local_admin())
    for i in range(8):
        await admin.create_session(SessionCreate(name=f"r{i}"))
    await proxy.until(lambda: len(proxy.opened) == 8, "the first eight dials")
    await manager.aclose()  # parks them, to be restored at the next start
    await proxy.until(lambda: len(proxy.closed) == 8, "those dials to be cut", timeout=5)
    mark = len(proxy.opened)

    manager = await open_manager()
    try:
        await proxy.until(lambda: len(proxy.opened) == mark + 8, "eight restore dials", timeout=40)
        restored = proxy.opened[mark:]
        assert restored[3] - restored[0] < 2.0  # four at once (a start lock made it 9 s)
        assert restored[4] - restored[0] > timeout - 0.5  # the fifth waited for a slot
    finally:
        await manager.aclose()


async def test_the_first_answer_reaches_go_only_under_the_start_lock(tmp_path: Path) -> None:
    """Once connected, neonize reads its unlocked maps; so the first bytes coming back on an
    attempt's dial wait until the attempt holds the start lock (here the test holds it)."""
    go_ahead = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the CONNECT request
        await go_ahead.wait()
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await reader.read(65536)  # Go's TLS hello, then nothing: the tunnel ends
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = NeonizeEngine(proxy=f"http://127.0.0.1:{port}", connect_timeout=30)
    report = Recorder()
    session = engine.session("a", report, auth_path=tmp_path / "a.db")
    await session.connect()
    run = session._run
    assert run is not None
    await _wait(lambda: run.relay.reached, "the dial to reach the proxy")
    assert _StartGate.lock.acquire(blocking=False)  # free: the dial released it
    try:
        go_ahead.set()
        with pytest.raises(TimeoutError):
            await report.next(timeout=1.0)  # the proxy answered; Go has not heard it
        assert not run.relay.answered
    finally:
        _StartGate.lock.release()
    event = await report.next()
    assert isinstance(event, SessionError) and event.code == "connect_failed"
    assert run.relay.answered
    await session.close()
    assert not _StartGate.lock.locked()
    server.close()


async def _wait(done: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send handshake '
         'request: Get "https://web.whatsapp.com/ws/chat": dial tcp: lookup web.whatsapp.com on '
         '10.255.255.53:53: no such host', "the name web.whatsapp.com does not resolve"),
        ('… Get "https://web.whatsapp.com/ws/chat": proxyconnect tcp: dial tcp 127.0.0.1:9: connect: '
         'connection refused', "connection refused by the proxy at 127.0.0.1:9"),
        ('… Get "https://web.whatsapp.com/ws/chat": socks connect tcp 127.0.0.1:9->web.whatsapp.com:443: '
         'dial tcp 127.0.0.1:9: connect: connection refused', "connection refused by the proxy at 127.0.0.1:9"),
        ('… Get "https://web.whatsapp.com/ws/chat": proxyconnect tcp: dial tcp: lookup px.invalid on '
         '10.0.0.1:53: no such host', "the proxy's name px.invalid does not resolve"),
        ('… Get "https://web.whatsapp.com/ws/chat": Proxy Authentication Required',
         "the proxy asks for credentials (407 Proxy Authentication Required)"),
        ('… Get "https://web.whatsapp.com/ws/chat": proxyconnect tcp: dial tcp 10.1.1.1:3128: i/o timeout',
         "connection timed out through the proxy"),
        ('… Get "https://web.whatsapp.com/ws/chat": dial tcp 157.240.1.1:443: connect: network is unreachable',
         "no network route to WhatsApp"),
    ],
)
def test_go_dial_errors_in_words(raw: str, words: str) -> None:
    assert dial_error_words(raw) == words
    event = connect_error(raw)
    assert event.message == f"cannot reach WhatsApp: {words}" and event.details == raw


def test_errors_that_are_not_dial_errors_keep_their_text() -> None:
    event = connect_error("unable to open database file: permission denied")
    assert event.message == "unable to open database file: permission denied" and event.details is None


def test_routes_follow_the_proxy_setting_then_the_environment() -> None:
    assert route_for(None, {}).kind == "connect"  # no proxy: the relay connects by itself
    env = {"HTTPS_PROXY": "http://u:p%40ss@10.0.0.1:3128"}
    route = route_for(None, env)
    assert (route.kind, route.upstream) == ("pipe", ("10.0.0.1", 3128))
    assert route.go_url(4242) == "http://u:p%40ss@127.0.0.1:4242"  # Go keeps the credentials
    assert route_for(None, {"https_proxy": "10.0.0.2:8080"}).upstream == ("10.0.0.2", 8080)
    assert route_for(None, {**env, "NO_PROXY": "localhost,.whatsapp.com"}).kind == "connect"
    assert route_for(None, {**env, "NO_PROXY": "example.com"}).kind == "pipe"
    socks = route_for("socks5h://10.0.0.3", env)  # the engine's own setting comes first
    assert socks.upstream == ("10.0.0.3", 1080) and socks.go_url(9) == "socks5://127.0.0.1:9"
    tls = route_for("https://proxy.example:443", {})  # TLS to the proxy: Go dials it itself
    assert (tls.kind, tls.proxy) == ("none", "https://proxy.example:443")


# --------------------------------------------------------------------------- through the server


@pytest.fixture
def neonize_server(tmp_path: Path, proxy: SilentProxy) -> Iterator[BackgroundServer]:
    """A server whose real engine runs in host processes (they inherit ``HTTPS_PROXY``)."""
    settings = Settings(data_dir=tmp_path / "data", engine="neonize", engine_isolation="process",
                        sqlite_synchronous="NORMAL", sse_ping_interval=0.2)
    server = BackgroundServer(
        settings, engine_factory=lambda: HostedEngine(EngineSpec("neonize", {"connect_timeout": 4.0})),
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _client(server: BackgroundServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_key}"},
                        timeout=30)


def _events(server: BackgroundServer, session_id: str, kind: EventType) -> list[dict[str, Any]]:
    manager = server.manager
    assert manager is not None

    async def read() -> list[dict[str, Any]]:
        await manager.drain_all()
        rows = await manager.store.read_events(session_id=session_id, types=[kind])
        return [e.payload for e in rows]

    return server.call(read)


def _poll(client: httpx.Client, url: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(url).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_pair_code_answers_within_2_s_and_the_outcome_follows_as_an_event(
    neonize_server: BackgroundServer, proxy: SilentProxy
) -> None:
    with _client(neonize_server) as client:
        sid = client.post("/v1/sessions", json={"name": "by-phone", "start": False}).json()["session_id"]
        started = time.monotonic()
        answer = client.post(f"/v1/sessions/{sid}/pair-code", json={"phone_number": "+49 151 1234 5678"})
        assert time.monotonic() - started < 2.0
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["session_id"] == sid and body["status"] == "pending"
        assert body["stream_url"].endswith(f"/v1/sessions/{sid}/stream")
        proxy.wait(lambda: len(proxy.opened) == 1, "the session's dial")

        # Offline, the outcome is a clear error on the session (after the connect timeout).
        failed = _poll(client, f"/v1/sessions/{sid}", lambda s: s["status"] == "failed")
        assert failed["reason"].startswith(
            f"cannot reach WhatsApp: connection timed out through the proxy at 127.0.0.1:{proxy.port}")
        errors = _events(neonize_server, sid, EventType.ERROR)
        assert [(e["code"], e["message"]) for e in errors] == [("connect_timeout", failed["reason"])]
        assert errors[0]["details"].startswith("no answer from WhatsApp within 4 s")
        proxy.wait(lambda: len(proxy.closed) == 1, "the dial to be cut", timeout=5)

        # `watui attach` asks the same way: on a 202 it follows the session to its outcome.
        other = client.post("/v1/sessions", json={"name": "attached", "start": False}).json()["session_id"]

        async def attached() -> None:
            remote = RemoteService(neonize_server.base_url, neonize_server.admin_key)
            try:
                with pytest.raises(EngineFailure, match=r"^cannot reach WhatsApp: connection timed out"):
                    await remote.request_pair_code(other, "+49 151 1234 5678")
            finally:
                await remote.aclose()

        asyncio.run(attached())


def test_a_pair_code_that_comes_at_once_is_the_answer(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL")
    engine = lambda: SimulatedEngine(connect_latency=0.01, link_latency=0.02, seed="tests")  # noqa: E731
    with BackgroundServer(settings, engine_factory=engine) as server, _client(server) as client:
        sid = client.post("/v1/sessions", json={"name": "quick", "start": False}).json()["session_id"]
        answer = client.post(f"/v1/sessions/{sid}/pair-code", json={"phone_number": "+1 415 555 0123"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["code"]) == 8 and answer.json()["session_id"] == sid
        documented = client.get("/openapi.json").json()["paths"]["/v1/sessions/{session_id}/pair-code"]["post"]
        assert {"200", "202", "409", "502"} <= set(documented["responses"])
        assert "PairCodePending" in str(documented["responses"]["202"])


def test_a_stop_racing_a_pair_code_answers_409_and_cuts_the_dial(
    neonize_server: BackgroundServer, proxy: SilentProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watui.server.routes_sessions as routes

    monkeypatch.setattr(routes, "PAIR_CODE_ANSWER", 30.0)  # so the request is still waiting
    with _client(neonize_server) as client, _client(neonize_server) as other:
        sid = client.post("/v1/sessions", json={"name": "racer", "start": False}).json()["session_id"]
        answers: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: answers.append(
            client.post(f"/v1/sessions/{sid}/pair-code", json={"phone_number": "+14155550123"})))
        asking.start()
        try:
            proxy.wait(lambda: len(proxy.opened) == 1, "the session's dial (its code is awaited)")
            stopping = time.monotonic()
            assert other.post(f"/v1/sessions/{sid}/stop").json()["status"] == "stopped"
        finally:
            asking.join(20)
        assert len(answers) == 1
        assert answers[0].status_code == 409, answers[0].text
        error = answers[0].json()["error"]
        assert error["code"] == "INVALID_TRANSITION" and error["details"]["status"] == "stopped"
        proxy.wait(lambda: len(proxy.closed) == 1, "the dial to be cut", timeout=5)
        assert proxy.closed[0] - stopping < 2.0
        assert other.get(f"/v1/sessions/{sid}").json()["status"] == Status.STOPPED.value
