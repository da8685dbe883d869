"""A proxy per session, with the real engine: neonize dials through loopback proxies that
record what it says to them.

:class:`Socks5Proxy` speaks SOCKS5 (RFC 1928) with username/password authentication (RFC
1929) and records each dial's credentials and target, then refuses the connection onward
("not allowed by ruleset"), so the session fails the way it would behind a proxy that will not
reach WhatsApp. :class:`HttpConnectProxy` records a CONNECT request and its
``Proxy-Authorization``, then answers 403. :class:`SilentProxy` accepts and never answers
(``test_neonize_offline`` points whole engines at it). Every wait is on what a proxy recorded
or on the session's facts, with deadlines; none sleeps for luck.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engine_recorder import Recorder

from watui.engines.base import SessionError, SessionOptions
from watui.engines.neonize import NeonizeEngine
from watui.engines.neonize.relay import mask_proxy, route_for


class LoopbackProxy:
    """A loopback TCP server that plays a proxy (:meth:`serve`, in a subclass), recording what
    each connection did.

    It runs on an event loop of its own (a thread), so sync and async tests can use it alike;
    ``opened`` and ``closed`` hold the monotonic time of each connection's start and end.
    """

    scheme = "http"

    def __init__(self) -> None:
        self.opened: list[float] = []
        self.closed: list[float] = []
        self._changed = threading.Condition()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-proxy", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._note(self.opened)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._note(self.closed)
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _note(self, times: list[Any], item: Any = None) -> None:
        with self._changed:
            times.append(time.monotonic() if item is None else item)
            self._changed.notify_all()

    @property
    def open_now(self) -> int:
        with self._changed:
            return len(self.opened) - len(self.closed)

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
        """Block until ``done()`` holds (checked whenever a connection opens or closes, or
        something is recorded); returns the seconds it took."""
        started = time.monotonic()
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        return time.monotonic() - started

    async def until(self, done: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
        return await asyncio.to_thread(self.wait, done, what, timeout)

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class SilentProxy(LoopbackProxy):
    """Accepts every connection and never says a word (a proxy on a dead network)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass  # whatever the client says, no answer


@dataclass(frozen=True, slots=True)
class Dial:
    """What one client said to a proxy: its credentials (None: it offered none) and target."""

    username: str | None
    password: str | None
    target: str | None


class Socks5Proxy(LoopbackProxy):
    """A SOCKS5 server that wants ``username``/``password`` (RFC 1929) and records each dial
    in :attr:`dials`. Right credentials: the CONNECT is read and refused (reply 0x02); wrong
    ones: the authentication fails (status 1), as a real proxy answers."""

    scheme = "socks5"

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.dials: list[Dial] = []
        super().__init__()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        # Each dial is noted before the answer: the client may act on the answer (and the
        # test read the dials) before this thread runs again.
        if version != 5 or 2 not in methods:  # no username/password offered
            self._note(self.dials, Dial(None, None, None))
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        await writer.drain()
        _, size = await reader.readexactly(2)  # RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD
        username = (await reader.readexactly(size)).decode()
        (size,) = await reader.readexactly(1)
        password = (await reader.readexactly(size)).decode()
        if (username, password) != (self.username, self.password):
            self._note(self.dials, Dial(username, password, None))
            writer.write(b"\x01\x01")
            await writer.drain()
            return
        writer.write(b"\x01\x00")
        await writer.drain()
        _, command, _, kind = await reader.readexactly(4)
        if kind == 3:
            (size,) = await reader.readexactly(1)
            host = (await reader.readexactly(size)).decode()
        else:
            host = ".".join(str(b) for b in await reader.readexactly(4 if kind == 1 else 16))
        port = int.from_bytes(await reader.readexactly(2), "big")
        assert command == 1  # CONNECT
        self._note(self.dials, Dial(username, password, f"{host}:{port}"))
        writer.write(b"\x05\x02\x00\x01" + bytes(6))  # connection not allowed by ruleset
        await writer.drain()


class HttpConnectProxy(LoopbackProxy):
    """An HTTP proxy that records each CONNECT (its target and ``Proxy-Authorization``) in
    :attr:`dials` and answers 403."""

    def __init__(self) -> None:
        self.dials: list[Dial] = []
        super().__init__()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        username = password = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                scheme, _, encoded = value.strip().partition(" ")
                assert scheme == "Basic"
                username, _, password = base64.b64decode(encoded).decode().partition(":")
        self._note(self.dials, Dial(username, password, target if method == "CONNECT" else None))
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()


def _with_auth(proxy: LoopbackProxy, userinfo: str) -> str:
    return f"{proxy.scheme}://{userinfo}@127.0.0.1:{proxy.port}"


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_each_session_dials_through_its_own_socks5_proxy_with_its_credentials(
    tmp_path: Path, no_env_proxy: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Two sessions of one engine, each with a SOCKS5 proxy and credentials of its own (one
    password percent-encoded in its URL, one with a raw ``@`` and ``:``): each proxy sees its session's
    dial to WhatsApp, authenticated with its username and password; each session then fails
    cleanly, in words, and no password shows in a fact or a log line."""
    ann = Socks5Proxy("ann", "s3cret:@/x")
    bob = Socks5Proxy("bob", "hun@ter:2")
    engine = NeonizeEngine(connect_timeout=15)
    caplog.set_level(logging.INFO, logger="watui.engines.neonize")
    try:
        reports = {name: Recorder() for name in ("ann", "bob")}
        sessions = [
            engine.session("ann", reports["ann"], auth_path=tmp_path / "ann.db",
                           options=SessionOptions(proxy=_with_auth(ann, "ann:s3cret%3A%40%2Fx"))),
            engine.session("bob", reports["bob"], auth_path=tmp_path / "bob.db",
                           options=SessionOptions(proxy=_with_auth(bob, "bob:hun@ter:2"))),
        ]
        await asyncio.gather(*(s.connect() for s in sessions))
        await ann.until(lambda: len(ann.dials) == 1, "ann's dial")
        await bob.until(lambda: len(bob.dials) == 1, "bob's dial")
        assert ann.dials == [Dial("ann", "s3cret:@/x", "web.whatsapp.com:443")]
        assert bob.dials == [Dial("bob", "hun@ter:2", "web.whatsapp.com:443")]
        for name, proxy in (("ann", ann), ("bob", bob)):
            event = await reports[name].next()
            assert isinstance(event, SessionError) and event.code == "connect_failed", event
            assert event.message == (
                f"cannot reach WhatsApp: the proxy at 127.0.0.1:{proxy.port} "
                "would not connect to WhatsApp (connection not allowed by ruleset)"
            ), event
            assert event.details and "socks connect" in event.details
        await asyncio.gather(*(s.close() for s in sessions))
        said = " ".join(str(e) for r in reports.values() for e in r.events) + caplog.text
        assert "s3cret" not in said and "ter:2" not in said and "ter%3A2" not in said
        assert f"socks5://ann:***@127.0.0.1:{ann.port}" in caplog.text  # which proxy, masked
    finally:
        await engine.aclose()
        ann.close()
        bob.close()


async def test_wrong_socks5_credentials_fail_cleanly_in_words(tmp_path: Path, no_env_proxy: None) -> None:
    proxy = Socks5Proxy("ann", "right")
    engine = NeonizeEngine(connect_timeout=15)
    report = Recorder()
    session = engine.session("w", report, auth_path=tmp_path / "w.db",
                             options=SessionOptions(proxy=_with_auth(proxy, "ann:wrong")))
    try:
        await session.connect()
        event = await report.next()
        assert proxy.dials == [Dial("ann", "wrong", None)]
        assert isinstance(event, SessionError) and event.code == "connect_failed"
        assert event.message == (
            f"cannot reach WhatsApp: the proxy at 127.0.0.1:{proxy.port} "
            "refused the username or password"
        )
        assert "wrong" not in event.message + (event.details or "")
    finally:
        await session.close()
        await engine.aclose()
        proxy.close()


async def test_the_engines_proxy_is_the_default_and_a_sessions_own_comes_first(
    tmp_path: Path, no_env_proxy: None
) -> None:
    """The engine-wide proxy (``WATUI_PROXY``'s) carries a session without one of its own;
    an HTTP proxy gets the credentials as ``Proxy-Authorization: Basic``."""
    default = Socks5Proxy("all", "shared")
    own = HttpConnectProxy()
    engine = NeonizeEngine(connect_timeout=15, proxy=_with_auth(default, "all:shared"))
    plain, special = Recorder(), Recorder()
    sessions = [
        engine.session("plain", plain, auth_path=tmp_path / "p.db", options=SessionOptions()),
        engine.session("special", special, auth_path=tmp_path / "s.db",
                       options=SessionOptions(proxy=_with_auth(own, "carol:pa%20ss"))),
    ]
    try:
        await asyncio.gather(*(s.connect() for s in sessions))
        await default.until(lambda: len(default.dials) == 1, "the default proxy's dial")
        await own.until(lambda: len(own.dials) == 1, "the session's own proxy's dial")
        assert default.dials == [Dial("all", "shared", "web.whatsapp.com:443")]
        assert own.dials == [Dial("carol", "pa ss", "web.whatsapp.com:443")]
        for report in (plain, special):
            event = await report.next()
            assert isinstance(event, SessionError) and event.code == "connect_failed"
        failed = special.events[0]
        assert isinstance(failed, SessionError)
        assert failed.message == (
            f"cannot reach WhatsApp: the proxy at 127.0.0.1:{own.port} refused the tunnel (Forbidden)")
        assert "pa ss" not in str(special.events) and "pa%20ss" not in str(special.events)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
        await engine.aclose()
        default.close()
        own.close()


def test_a_proxys_password_is_masked_for_logs() -> None:
    assert mask_proxy("socks5://ann:s3cret@10.0.0.1:1080") == "socks5://ann:***@10.0.0.1:1080"
    assert mask_proxy("http://ann@proxy:3128") == "http://ann@proxy:3128"  # no password to hide
    assert mask_proxy("http://proxy:3128") == "http://proxy:3128"
    assert mask_proxy("http://a:b:c@[::1]:8080/") == "http://a:***@[::1]:8080/"
    route = route_for("socks5://ann:s3cret@10.0.0.1:1080", {})
    assert route.where == "the proxy at 10.0.0.1:1080" and "s3cret" not in route.where


def test_go_gets_the_credentials_percent_encoded() -> None:
    raw = route_for("socks5://bob:hun@ter:2@10.0.0.1:1080", {})
    assert raw.upstream == ("10.0.0.1", 1080)
    assert raw.go_url(9) == "socks5://bob:hun%40ter%3A2@127.0.0.1:9"
    encoded = route_for("http://a%20b:p%2Fw@proxy.example:3128", {})
    assert encoded.go_url(9) == "http://a%20b:p%2Fw@127.0.0.1:9"  # not encoded twice
    assert route_for("socks5://only-user@10.0.0.1", {}).go_url(9) == "socks5://only-user@127.0.0.1:9"


async def test_a_session_in_an_engine_host_dials_through_its_own_proxy(
    tmp_path: Path, no_env_proxy: None
) -> None:
    """The same through an engine host process (how watui runs neonize): the session's
    proxy crosses the pipe with its ``open`` call and applies before the first dial."""
    from watui.engines.hosts import HostedEngine
    from watui.engines.spec import EngineSpec

    proxy = Socks5Proxy("dan", "pa:ss")
    engine = HostedEngine(EngineSpec("neonize", {"connect_timeout": 15.0}))
    report = Recorder()
    session = engine.session("hosted", report, auth_path=tmp_path / "h.db",
                             options=SessionOptions(proxy=_with_auth(proxy, "dan:pa%3Ass")))
    try:
        await session.connect()
        event = await report.next(timeout=40)
        assert proxy.dials == [Dial("dan", "pa:ss", "web.whatsapp.com:443")]
        assert isinstance(event, SessionError) and event.code == "connect_failed"
        assert event.message == (
            f"cannot reach WhatsApp: the proxy at 127.0.0.1:{proxy.port} "
            "would not connect to WhatsApp (connection not allowed by ruleset)"
        )
    finally:
        await session.close()
        await engine.aclose()
        proxy.close()
