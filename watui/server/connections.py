"""Client connections: a deadline for request headers, a cap on open connections, and the
open-files limit they draw on.

uvicorn (0.55 here; ``httptools`` is not installed, so ``http="auto"`` is h11) gives a new
connection no deadline at all: its keep-alive timer starts only once a response is complete,
so a connection that never sends a request holds its file descriptor for ever. With the
open-files limit at 1024, 1,100 such connections take every descriptor: ``accept()`` fails
with ``EMFILE`` (asyncio retries each second), ``GET /v1/health`` waits in the listen
backlog, and none of them is ever closed. Measured (``bench/bench_connections.py``, limit 1024,
1,100 silent connections): with uvicorn as configured before, none of 100 health checks over
25 s was answered and all 1,100 connections were still open at the end; with the guards
below, all 1,100 were closed 10.0 s after they opened, health p50 was 1.6 ms (p99 0.76 s: the
second asyncio waits after ``EMFILE``, see below) and 60 % of the checks answered 200, the
rest ``503 OVERLOADED`` while the cap was full.

What uvicorn itself offers does not help against that flood:

- ``limit_concurrency`` is checked when a request's headers have arrived, which a silent
  connection never does: the bench runs it too, at the same cap, and it starves the same way
  (no health check answered, nothing closed); and its 503 is plain text, not our error shape.
- ``timeout_keep_alive`` runs only between requests, after a response.
- h11's ``max_incomplete_event_size`` bounds how large the headers are, not how long they take.

So :class:`GuardedH11Protocol` subclasses uvicorn's h11 protocol, given to uvicorn the way it
documents choosing one (``uvicorn.Config(http=...)``, here through :class:`GuardedConfig`),
and adds two guards at the connection, where uvicorn keeps its own keep-alive timer:

- **Header deadline** (``WATUI_HEADER_TIMEOUT``, 10 s): armed when a connection opens, and on
  a kept-alive connection when the first bytes of its next request arrive (the time between
  requests stays uvicorn's keep-alive timeout). It is disarmed as soon as h11 has the complete
  request headers (its client state leaves ``IDLE``), so a request under way, an SSE stream
  above all, is never cut by it however long it lasts. An overdue connection is closed, as
  uvicorn closes an idle kept-alive one: there is no request to answer.
- **Connection cap** (``WATUI_MAX_CONNECTIONS``; by default the open-files limit less what the
  store, the engine hosts and the rest keep open, see :func:`default_max_connections`): a
  connection past it is answered at once, without reading its request, ``503`` with
  ``{"error": {"code": "OVERLOADED", ...}}`` and ``Retry-After``, and closed: a lingering
  close, as RFC 9112 section 9.6 advises, so that what the client is still sending is read
  and dropped rather than answered with a reset (which could cost the client its answer),
  until the client closes or goes quiet for :data:`REFUSED_QUIET` (2 s at most).

At start :func:`raise_open_files_limit` raises the soft open-files limit to the hard one (a
service manager or a shell often leaves it at 1024 while allowing far more).

The h11 protocol is the one used whether or not ``httptools`` is installed: the guards rely
on h11's connection state, and one implementation keeps the behaviour the same everywhere.

What the cap cannot do: asyncio accepts every connection waiting in the listen backlog in one
go, before any of them reaches the protocol, so a burst larger than the descriptors left
still meets ``EMFILE`` once (asyncio logs ``socket.accept() out of system resource`` and
accepts again a second later). A smaller ``backlog`` bounds each round of accepts but also
the kernel's queue, whose overflow clients retry only a second later: measured at 128 and 64,
it moved the stall to the connecting clients, and at 64 ``EMFILE`` came all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import resource
from dataclasses import dataclass
from functools import cache
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState as UvicornServerState

from watui.config import Settings
from watui.server.errors import error_body

log = logging.getLogger("watui.server")

RESERVED_FDS = 128
"""Descriptors kept for everything but client connections: the store (its database, WAL and
writer process's pipes), the QR drawing process, up to 64 webhook deliveries in flight, log
files, the event loop and the listening socket."""
FDS_PER_HOST = 3
"""An engine host's stdin, stdout and stderr pipes, held by this process."""
FDS_PER_INLINE_SESSION = 4
"""A real (neonize) session run in this process: its websocket and its auth database (with
WAL and shared memory), roughly."""
CLUSTER_FDS = 544
"""Cluster mode: connections to the other nodes (up to 500), PostgreSQL and Redis."""
MIN_CONNECTIONS = 32
"""The cap never goes below this, however little the open-files limit leaves."""
UNLIMITED_FDS = 65536
"""What the soft limit is raised to when the hard one is unlimited (macOS)."""
REFUSED_QUIET = 0.25
"""A refused connection is closed once its client has sent nothing for this long (or at the
client's end of file)..."""
REFUSED_LINGER = 2.0
"""... and at the latest this long after it was refused."""

HEADERS_OVERDUE = "closed connections that sent no complete request headers within %g s"
REFUSED = "refused connections over the cap of %d open at once (WATUI_MAX_CONNECTIONS): 503 OVERLOADED"


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class OpenFiles:
    """The open-files limit after :func:`raise_open_files_limit`, and what it did."""

    limit: int
    was: int | None = None
    """The soft limit before it was raised (None: it was not)."""
    failed: str | None = None
    """Why raising it failed, if it did."""

    def log(self) -> None:
        """Say it once the server starts (not before: a start that fails is one line)."""
        if self.failed is not None:
            log.warning("open files: could not raise the limit from %d (%s)", self.limit, self.failed)
        elif self.was is not None:
            log.info("open files: limit raised from %d to %d (the hard limit)", self.was, self.limit)


@cache
def raise_open_files_limit() -> OpenFiles:
    """Raise the soft open-files limit to the hard one, once per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return OpenFiles(UNLIMITED_FDS)
    target = max(soft, UNLIMITED_FDS) if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return OpenFiles(soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return OpenFiles(soft, failed=str(exc))
    return OpenFiles(target, was=soft)


def open_files_limit() -> int:
    """The soft open-files limit now."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft


def reserved_fds(settings: Settings) -> int:
    """Descriptors this process may need for everything but client connections."""
    reserve = RESERVED_FDS
    if settings.isolation == "process":
        reserve += FDS_PER_HOST * math.ceil(settings.node_capacity / settings.sessions_per_host)
    elif settings.engine == "neonize":
        reserve += FDS_PER_INLINE_SESSION * settings.node_capacity
    if settings.clustered:
        reserve += CLUSTER_FDS
    return reserve


def default_max_connections(settings: Settings, open_files: int) -> int:
    """The cap when ``WATUI_MAX_CONNECTIONS`` is unset: the open-files limit less
    :func:`reserved_fds` (896 for the simulated engine at 1024, 836 for neonize with its
    default 1,000 sessions in engine hosts), and never below :data:`MIN_CONNECTIONS`."""
    return max(MIN_CONNECTIONS, open_files - reserved_fds(settings))


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    """Seconds a connection gets to send its complete request headers."""
    max_connections: int | None = None
    """Connections open at once; None: no cap."""

    @property
    def retry_after(self) -> int:
        """What a refused client is told to wait: by then every silent connection is gone."""
        return max(1, math.ceil(self.header_timeout))

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The settings' limits; the default cap from the open-files limit as it is now."""
        cap = settings.max_connections
        if cap is None:
            cap = default_max_connections(settings, open_files_limit())
        return cls(header_timeout=settings.header_timeout, max_connections=cap)


def log_limits(settings: Settings, limits: ConnectionLimits, files: OpenFiles) -> None:
    """At start: the open-files limit if it was raised, and one line for the cap and where
    it comes from, the header deadline."""
    files.log()
    open_files = files.limit
    if settings.max_connections is not None:
        origin = "WATUI_MAX_CONNECTIONS"
    else:
        origin = f"open files {open_files} less {reserved_fds(settings)} kept for the store, engine hosts, ..."
    log.info("connections: at most %s open at once (%s); request headers within %g s",
             limits.max_connections, origin, limits.header_timeout)
    if settings.max_connections is None and limits.max_connections == MIN_CONNECTIONS:
        log.warning("open files: the limit (%d) leaves room for few connections; raise it "
                    "(ulimit -n, or LimitNOFILE= in a systemd unit)", open_files)


# ---------------------------------------------------------------- uvicorn


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration, serving HTTP/1.1 with :class:`GuardedH11Protocol` under ``limits``."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedH11Protocol, **kwargs)
        self.limits = limits


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (see the module)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: UvicornServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits if isinstance(config, GuardedConfig) else ConnectionLimits()
        self._timer: asyncio.TimerHandle | None = None
        self._refused: float | None = None
        """When the connection was refused (past the cap); None if it was not."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self.limits.max_connections
        if cap is not None and len(self.connections) > cap:
            self._refuse(cap)
        else:
            self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            self._linger()  # what it sends is read and dropped; its answer is on its way
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            self._stop_timer()  # the headers are in (or the connection is done for)
        elif self._timer is None:
            self._await_headers()  # the first bytes of a kept-alive connection's next request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    # ------------------------------------------------------------ header deadline

    def _await_headers(self) -> None:
        self._stop_timer()
        self._timer = self.loop.call_later(self.limits.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        self._timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info(HEADERS_OVERDUE, self.limits.header_timeout)
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ cap

    def _refuse(self, cap: int) -> None:
        self._refused = self.loop.time()
        log.warning(REFUSED, cap)
        retry = self.limits.retry_after
        body = json.dumps(error_body(
            "OVERLOADED", f"The server has as many connections open as it takes ({cap}); retry in {retry} s.",
        )).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=503, headers=headers, reason=b"Service Unavailable"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        if self.transport.can_write_eof():
            with contextlib.suppress(OSError):  # the client may be gone already
                self.transport.write_eof()  # it reads the answer, then our end of file, and closes
        self._linger()

    def _linger(self) -> None:
        """Close the refused connection once the client has been quiet for a moment: closing
        a socket with unread bytes resets it, and the client may then lose its answer."""
        assert self._refused is not None
        self._stop_timer()
        close_at = min(self.loop.time() + REFUSED_QUIET, self._refused + REFUSED_LINGER)
        self._timer = self.loop.call_at(close_at, self.transport.close)
