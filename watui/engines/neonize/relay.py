"""Each attempt's own local proxy: how watui sees a dial begin, cuts it, and says why it failed.

Why. whatsmeow dials WhatsApp inside ``Neonize()`` on a deadline of its own and cannot be
called off: ``Connect`` holds the client's socket lock for the whole dial, ``Disconnect`` waits
for that lock, and the dial's context is ``context.Background()``. Through a proxy that accepts
and never answers, Go gives up only after a minute (net/http's CONNECT deadline). Nor does Go
tell anyone when it starts to dial, which is the moment neonize is done writing its unlocked
maps (:mod:`.run`). So every attempt dials through a proxy of its own, :class:`_Relay`, a
listener on 127.0.0.1 in this process:

* its first connection says the dial has begun (the start gate opens for the next attempt);
* closing it cuts the dial: Go's read fails at once and ``Neonize()`` returns;
* it sees what went wrong, in words: a name that does not resolve, a connection refused, a
  proxy that accepted the connection and never answered (:class:`_Failure`, :meth:`_Relay.silence`).

Where it leads (:func:`route_for`). With no proxy (neither the session's ``proxy`` setting,
the engine's ``proxy`` option, nor
``HTTPS_PROXY``/``https_proxy``, read as Go reads them, ``NO_PROXY`` included), the relay is an
HTTP CONNECT proxy that connects to WhatsApp itself. With an ``http://`` or ``socks5://`` proxy
it is a plain TCP pipe to that proxy: Go still speaks the proxy's protocol, credentials
included, end to end (SOCKS5 username/password authentication, RFC 1929, for a
``socks5://user:pass@…`` proxy; a ``Proxy-Authorization: Basic`` header on the CONNECT for an
``http://user:pass@…`` one); only the address it dials is the relay's. The proxy is chosen
per session (``SessionOptions.proxy``, applied before the attempt dials), so each number can
go out through an address of its own; a password is never logged (:func:`mask_proxy`). An ``https://`` proxy (TLS to
the proxy, whose certificate names the proxy's own host) is handed to Go as it is: those
attempts have no relay, so the start gate falls back to its grace and a dial cannot be cut.

All relays of a process share one event loop on a daemon thread (``watui-neonize-relay``), so
WhatsApp's traffic never waits for the engine's own loop. The cost: a listening socket per
attempt and two sockets per connection, and every byte copied once in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

WHATSAPP_HOST = "web.whatsapp.com"
"""Where whatsmeow's websocket goes (and what ``NO_PROXY`` is checked against)."""

LOOKUP_THREADS = 32
"""Name lookups (``getaddrinfo``) the relay makes at once, at most."""

OPEN_TIMEOUT = 10.0
"""Seconds to wait for the relay loop to open a listener (it normally takes a millisecond)."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_CHUNK = 64 * 1024
"""Bytes copied at a time, and a connection's read buffer (a CONNECT request must fit)."""


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True, slots=True)
class _Route:
    """Where an attempt's connections go.

    ``connect``: the relay is a CONNECT proxy and connects to the target itself. ``pipe``: the
    relay pipes each connection to ``upstream``, the proxy Go speaks to. ``none``: no relay;
    Go dials ``proxy`` (or nothing: its own environment) by itself.
    """

    kind: Literal["connect", "pipe", "none"]
    proxy: str | None = None
    upstream: tuple[str, int] | None = None

    @property
    def where(self) -> str:
        """The proxy in words (``the proxy at host:port``), or ``""`` when there is none."""
        if self.upstream is not None:
            return f"the proxy at {self.upstream[0]}:{self.upstream[1]}"
        if self.proxy:  # never the URL itself: it may carry a password
            return f"the proxy at {urlsplit(self.proxy).hostname or '(unreadable address)'}"
        return ""

    def go_url(self, port: int) -> str:
        """The proxy URL Go is given when this attempt's relay listens on ``port``."""
        if self.kind == "connect" or self.proxy is None:
            return f"http://127.0.0.1:{port}"
        parts = urlsplit(self.proxy)
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at:
            # Go's URL parser refuses a raw "@" (or "/", " "…) in the credentials: give them
            # to it percent-encoded, whichever way they came (decoding an encoded one first).
            user, colon, password = userinfo.partition(":")
            userinfo = quote(unquote(user), safe="")
            if colon:
                userinfo += ":" + quote(unquote(password), safe="")
        # whatsmeow knows "socks5" only; Go's SOCKS5 dialer sends the name to the proxy anyway.
        scheme = "socks5" if parts.scheme == "socks5h" else parts.scheme
        return urlunsplit((scheme, f"{userinfo}{at}127.0.0.1:{port}", parts.path, "", ""))


def mask_proxy(proxy: str) -> str:
    """A proxy URL fit for a log: its password (if any) replaced by ``***``
    (``socks5://ann:***@10.0.0.1:1080``)."""
    try:
        parts = urlsplit(proxy)
    except ValueError:
        return "(unreadable proxy address)"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return proxy
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else user
    return urlunsplit((parts.scheme, f"{masked}@{hostport}", parts.path, "", ""))


def route_for(proxy: str | None, environ: Mapping[str, str] | None = None) -> _Route:
    """The route for an attempt given the engine's ``proxy`` option and the environment.

    Without the option, the proxy is what Go would take from the environment for an
    ``https://`` request: ``HTTPS_PROXY`` (then ``https_proxy``), unless ``NO_PROXY`` covers
    web.whatsapp.com; a value without a scheme means ``http://``.
    """
    env = os.environ if environ is None else environ
    if not proxy:
        proxy = env.get("HTTPS_PROXY") or env.get("https_proxy") or None
        if proxy and _bypassed(env):
            proxy = None
        if proxy and "://" not in proxy:
            proxy = f"http://{proxy}"
    if not proxy:
        return _Route("connect")
    parts = urlsplit(proxy)
    try:
        port = _port_of(parts)
    except ValueError:
        return _Route("none", proxy)  # Go reports the bad URL itself
    if parts.scheme in ("http", "socks5", "socks5h") and parts.hostname and port:
        return _Route("pipe", proxy, (parts.hostname, port))
    return _Route("none", proxy)


def _port_of(parts: SplitResult) -> int | None:
    return parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _bypassed(env: Mapping[str, str]) -> bool:
    """Whether ``NO_PROXY`` (then ``no_proxy``) covers web.whatsapp.com, as Go reads it: ``*``,
    or a name that is the host or a parent domain of it (a leading dot optional, a port
    ignored)."""
    for entry in (env.get("NO_PROXY") or env.get("no_proxy") or "").split(","):
        name = entry.strip().lower()
        if name == "*":
            return True
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        name = name.lstrip(".")
        if name and (WHATSAPP_HOST == name or WHATSAPP_HOST.endswith(f".{name}")):
            return True
    return False


# --------------------------------------------------------------------------- the loop


class _RelayLoop:
    """The process's relay event loop, on a daemon thread of its own (started on first use)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            loop = cls._loop
            if loop is None or loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=cls._run, args=(loop,), name="watui-neonize-relay", daemon=True
                ).start()
                cls._loop = loop
            return loop

    @classmethod
    def _forget(cls) -> None:
        """In a forked child: the loop's thread did not come along, so start afresh."""
        cls._lock = threading.Lock()
        cls._loop = None

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        # Name lookups run in threads: enough of them that a slow resolver does not queue a
        # host's starts behind each other (Go's own resolver would look them up in parallel).
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="watui-relay-lookup")
        )
        loop.run_forever()


os.register_at_fork(after_in_child=_RelayLoop._forget)


# --------------------------------------------------------------------------- one attempt's relay


@dataclass(frozen=True, slots=True)
class _Failure:
    """What the relay saw go wrong: ``words`` for a person, ``raw`` as the system said it."""

    words: str
    raw: str


class _Relay:
    """One attempt's proxy (see the module docstring). Its public methods are thread-safe.

    ``on_dial`` runs (on the relay thread) when the first connection arrives: Go has begun to
    dial. ``hold_answer`` is awaited before the first bytes coming back on that connection are
    handed to Go (the attempt takes the start gate there: see :mod:`.run`).
    """

    def __init__(
        self,
        route: _Route,
        *,
        on_dial: Callable[[], None],
        hold_answer: Callable[[], Awaitable[None]],
    ) -> None:
        self.route = route
        self._on_dial = on_dial
        self._hold_answer = hold_answer
        self.dialled = False  # a connection arrived: Go has begun to dial
        self.reached = False  # the relay's own connection onward (target or proxy) is up
        self.answered = False  # bytes came back on the first connection
        self.target = f"{WHATSAPP_HOST}:443"  # what Go asked for (connect route)
        self.resolving: str | None = None  # the name being looked up now, in words
        self.failure: _Failure | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cut = False

    @property
    def active(self) -> bool:
        """True if Go dials through this relay (it is open, or was)."""
        return self._loop is not None

    def open(self) -> str | None:
        """Start listening (blocking; call it off the engine's loop); returns the proxy URL for
        Go, or the route's own proxy when this route has no relay."""
        if self.route.kind == "none":
            return self.route.proxy
        if self._cut:
            raise RuntimeError("the attempt's relay was closed before it opened")
        loop = _RelayLoop.get()
        port = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(OPEN_TIMEOUT)
        self._loop = loop
        if self._cut:  # cut while it opened
            self.cut()
        return self.route.go_url(port)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_CHUNK)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def cut(self) -> None:
        """Close the listener and every connection (any thread; idempotent). Go's dial, if one
        is under way, fails at once; a dial after this is refused."""
        self._cut = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the relay loop is gone (interpreter exit)
                loop.call_soon_threadsafe(self._close_all)

    def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    def silence(self, waited: float) -> str:
        """What an attempt that got no answer in ``waited`` seconds was waiting for, in words."""
        where, took = self.route.where, f"{waited:.0f} s"
        if self.route.kind == "none":
            return f"connection timed out through {where} ({took})" if where else f"connection timed out ({took})"
        if not self.dialled:
            return f"the engine did not begin to dial within {took}"
        if self.resolving is not None:
            return f"{self.resolving} did not resolve in {took}"
        if self.route.kind == "pipe":
            if not self.reached:
                return f"connection to {where} timed out ({took})"
            if not self.answered:
                return f"connection timed out through {where}: it accepted the connection and sent nothing in {took}"
            return f"WhatsApp did not answer through {where} within {took}"
        if not self.reached:
            return f"connection to {self.target} timed out ({took})"
        return f"{self.target} accepted the connection and sent nothing in {took}"

    # ---------------------------------------------------------------- connections (relay loop)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._cut:
            writer.transport.abort()
            return
        self._tasks.add(task)
        first = not self.dialled
        if first:
            self.dialled = True
            try:
                self._on_dial()
            except Exception:
                log.exception("the relay's dial hook failed")
        onward: asyncio.StreamWriter | None = None
        try:
            if self.route.kind == "pipe":
                assert self.route.upstream is not None
                host, port = self.route.upstream
                opened = await self._open(host, port, proxy=True)
            else:
                opened = await self._tunnel(reader, writer)
            if opened is None:
                return
            self.reached = True
            onward_reader, onward = opened
            await self._pipe(reader, writer, onward_reader, onward, gate=first)
        except asyncio.CancelledError:
            pass  # cut
        except Exception:
            log.debug("relay connection ended", exc_info=True)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
            if onward is not None:
                onward.transport.abort()

    async def _tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The CONNECT proxy: read Go's request, connect to its target, answer 200 or 502."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        target = rest.partition(" ")[0]
        host, _, port_text = target.rpartition(":")
        host = host.strip("[]")
        if method != "CONNECT" or not host or not port_text.isdigit():
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        self.target = f"{host}:{port_text}"
        opened = await self._open(host, int(port_text), proxy=False)
        if opened is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return opened

    async def _open(
        self, host: str, port: int, *, proxy: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Resolve ``host`` and connect to the first of its addresses that answers."""
        who = f"the proxy at {host}:{port}" if proxy else f"{host}:{port}"
        loop = asyncio.get_running_loop()
        self.resolving = f"the proxy's name {host}" if proxy else f"the name {host}"
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self._fail(f"{self.resolving} does not resolve", f"lookup {host}: {exc.strerror or exc}")
            return None
        finally:
            self.resolving = None
        error: OSError = OSError(errno.EHOSTUNREACH, "no address")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_connection(sock=sock, limit=_CHUNK)
        reason = error.strerror or str(error)
        if isinstance(error, ConnectionRefusedError):
            words = f"connection refused by {who}"
        elif isinstance(error, TimeoutError) or error.errno == errno.ETIMEDOUT:
            words = f"connection to {who} timed out"
        elif error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            words = f"no network route to {who}"
        else:
            words = f"cannot connect to {who} ({reason})"
        self._fail(words, f"dial tcp {host}:{port}: {reason}")
        return None

    def _fail(self, words: str, raw: str) -> None:
        if self.failure is None:
            self.failure = _Failure(words, raw)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        onward_reader: asyncio.StreamReader,
        onward: asyncio.StreamWriter,
        *,
        gate: bool,
    ) -> None:
        """Copy both ways until either side ends (a tunnel is over when one end closes)."""
        outbound = asyncio.ensure_future(_copy(reader, onward))
        inbound = asyncio.ensure_future(self._copy_back(onward_reader, writer, gate=gate))
        try:
            await asyncio.wait((outbound, inbound), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (outbound, inbound):
                task.cancel()
            await asyncio.gather(outbound, inbound, return_exceptions=True)

    async def _copy_back(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, gate: bool
    ) -> None:
        first = True
        while data := await src.read(_CHUNK):
            if first:
                first = False
                if gate:
                    await self._hold_answer()
                    self.answered = True
            dst.write(data)
            await dst.drain()
        if first and gate:  # not one byte came back before the other end closed
            where = self.route.where if self.route.kind == "pipe" else self.target
            self._fail(f"{where} closed the connection without answering", "EOF before any answer")


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(_CHUNK):
        dst.write(data)
        await dst.drain()
