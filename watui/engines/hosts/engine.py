"""``HostedEngine``: the :class:`~watui.engines.base.Engine` protocol, served by host processes.

To the manager a hosted engine is an engine like any other: it makes sessions, and each
session connects, disconnects, pairs, sends, and reports facts through ``report``. Behind that,
every call goes over a pipe to the engine host the session is placed in, and every fact comes
back the same way, on the event loop, in order.

A session is placed at its connect: it stays in its host while that host runs and takes
sessions, and moves to another at its next connect when its host crashed or is draining.
When its host crashes, a session that was connected reports ``SessionDisconnected
("engine_crashed")`` (the manager reconnects it, in a fresh host), one that was still linking
or reconnecting ``SessionError(code="engine_crashed")``, even if its connect call was still in
the pipe (that call then returns: the fact alone tells the manager); an idle one reports nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from watui.engines.base import (
    EngineEvent,
    EngineRefused,
    LoggedOut,
    Outgoing,
    PhoneAction,
    Report,
    SessionConnected,
    SessionDisconnected,
    SessionError,
    SessionOptions,
)
from watui.engines.hosts.supervisor import HostCrashed, HostProcess, Supervisor
from watui.engines.hosts.wire import encode_options
from watui.engines.spec import EngineSpec, build_inline

if TYPE_CHECKING:
    from watui.models import EngineHost

CRASH_REASON = "engine_crashed"


class HostedSession:
    """One watui session's engine side, living in whichever host it is placed in."""

    def __init__(
        self, engine: HostedEngine, session_id: str, report: Report, auth_path: Path,
        options: SessionOptions | None = None,
    ) -> None:
        self.engine = engine
        self.session_id = session_id
        self.report = report
        self.auth_path = auth_path
        self.options = options
        self.host: HostProcess | None = None
        self._attempt = False  # a connect attempt is under way (or connected) in the host
        self._connected = False  # the attempt reported SessionConnected
        self._connecting = False  # connect() is under way (placing, ``open``, ``connect``)
        self._crash_reported = False  # host_crashed() reported a crash (reset by each connect())
        self._closed = False

    # ---------------------------------------------------------------- from the host

    def deliver(self, host: HostProcess, event: EngineEvent) -> None:
        if host is not self.host:
            return
        if isinstance(event, SessionConnected):
            self._connected = True
        elif isinstance(event, SessionDisconnected | LoggedOut | SessionError):
            self._attempt = self._connected = False
        self.report(event)

    def host_crashed(self, host: HostProcess, why: str) -> None:
        if host is not self.host:
            return
        self.host = None
        # A connect whose ``open`` or ``connect`` call is still in the pipe is an attempt too:
        # it reports the crash like any other, and the call returns (see :meth:`connect`).
        attempt, connected = self._attempt or self._connecting, self._connected
        self._attempt = self._connected = False
        self._crash_reported = connected or attempt
        if connected:
            self.report(SessionDisconnected(CRASH_REASON))
        elif attempt:
            self.report(SessionError(f"the engine host process ended unexpectedly ({why})", code=CRASH_REASON))

    # ---------------------------------------------------------------- EngineSession

    async def connect(self) -> None:
        """Start an attempt in this session's host (placed in one first if it has none).

        If the host crashes while the ``open`` or ``connect`` call is in flight, the crash is
        reported as a fact (``SessionError(code="engine_crashed")``, by :meth:`host_crashed`)
        and this returns: the same outcome as a crash a moment later, whichever comes first.
        """
        if self._closed:
            raise EngineRefused("this engine session is closed")
        supervisor = self.engine.supervisor
        host = self.host
        self._connecting, self._crash_reported = True, False
        try:
            if host is None or not host.alive or host.draining:
                await self._leave()
                host = await supervisor.place(self)
                self.host = host
                await host.call("open", self.session_id, auth_path=str(self.auth_path),
                                options=encode_options(self.options))
            supervisor.count_connect(host)
            self._attempt, self._connected = True, False
            await host.call("connect", self.session_id)
        except HostCrashed:
            self._attempt = False
            if not self._crash_reported:
                raise  # the host was stopped under the call, or the engine is shut down
        except BaseException:
            self._attempt = False
            raise
        finally:
            self._connecting = False

    async def disconnect(self) -> None:
        host = self.host
        self._attempt = self._connected = False
        if host is None:
            return
        with contextlib.suppress(HostCrashed):
            await host.call("disconnect", self.session_id)
        if host.draining:
            await self._leave()  # let a draining host empty as soon as it can

    async def logout(self) -> None:
        host = self.host
        self._attempt = self._connected = False
        if host is None:
            await self.engine.remove_auth(self.session_id, self.auth_path)
            return
        await host.call("logout", self.session_id)

    async def pair_phone(self, phone_number: str) -> str:
        return str(await self._live_host("request a pairing code").call(
            "pair_phone", self.session_id, phone_number=phone_number))

    async def send_text(self, to: str, text: str) -> str:
        return str(await self._live_host("send").call("send_text", self.session_id, to=to, text=text))

    async def send(self, to: str, message: Outgoing) -> str:
        # A file goes by its path (MediaFile), never as bytes in a frame.
        return str(await self._live_host("send").call(
            "send", self.session_id, to=to, message=dataclasses.asdict(message)))

    async def close(self) -> None:
        self._closed = True
        await self._leave()
        # A teardown in the background may close this after a restart made the next one.
        if self.engine._sessions.get(self.session_id) is self:
            del self.engine._sessions[self.session_id]

    # ---------------------------------------------------------------- helpers

    def _live_host(self, what: str) -> HostProcess:
        host = self.host
        if host is None or not host.alive:
            raise EngineRefused(f"cannot {what}: the session is not connected")
        return host

    async def _leave(self) -> None:
        """Close this session in its host and leave it (an empty host then stops)."""
        host, self.host = self.host, None
        self._attempt = self._connected = False
        if host is None:
            return
        try:
            if host.alive:
                with contextlib.suppress(HostCrashed, EngineRefused):
                    await host.call("close", self.session_id)
        finally:
            self.engine.supervisor.leave(self, host)


class HostedEngine:
    """An engine of kind ``spec.engine`` whose sessions run in supervised host processes.

    ``sessions_per_host``: sessions placed in one host at most. ``recycle_connects``: connect
    attempts after which a host drains into a fresh one. ``idle_grace``: seconds an empty
    host waits for a new session before it stops (a restart then reuses it).
    """

    def __init__(
        self,
        spec: EngineSpec,
        *,
        sessions_per_host: int = 50,
        recycle_connects: int = 500,
        idle_grace: float = 1.0,
    ) -> None:
        self.spec = spec
        self.name = spec.engine
        # Auth data (files on disk, or PostgreSQL rows in cluster mode) is read and removed
        # here, without loading an engine runtime.
        self._local = build_inline(spec)
        self.plays_phone = self._local.plays_phone
        self.supervisor = Supervisor(
            spec, sessions_per_host=sessions_per_host, recycle_connects=recycle_connects,
            idle_grace=idle_grace,
        )
        self._sessions: dict[str, HostedSession] = {}

    def session(
        self, session_id: str, report: Report, *, auth_path: Path, options: SessionOptions | None = None,
    ) -> HostedSession:
        session = HostedSession(self, session_id, report, Path(auth_path), options)
        self._sessions[session_id] = session
        return session

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        return await self._local.has_auth(session_id, auth_path)

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        await self._local.remove_auth(session_id, auth_path)
        for host in list(self.supervisor.live):  # a host may hold it in memory (simulated)
            with contextlib.suppress(HostCrashed, EngineRefused, RuntimeError):
                await host.call("forget", session_id, auth_path=str(auth_path))

    async def play_phone(self, session_id: str, action: PhoneAction) -> None:
        if not self.plays_phone:
            raise EngineRefused(f"the {self.name} engine cannot play the phone")
        session = self._sessions.get(session_id)
        host = session.host if session is not None else None
        if host is None or not host.alive:
            raise EngineRefused("this session is not running")
        try:
            await host.call("play_phone", session_id, **dataclasses.asdict(action))
        except HostCrashed as exc:
            raise EngineRefused(str(exc)) from None

    def hosts(self) -> list[EngineHost]:
        return self.supervisor.describe()

    def crash_host(self, host_id: str, how: str = "kill") -> int | None:
        """End a host the hard way and return its pid (tests and the benchmark).

        ``kill``: SIGKILL from watui (what the OOM killer does); ``go``: a nil-pointer panic
        in neonize's Go code inside the host; ``abort``: the host aborts itself.
        """
        host = self.supervisor.find(host_id)
        if host is None:
            raise LookupError(f"no engine host {host_id!r}")
        if how == "kill":
            host.kill()
        else:
            host.send("crash", how=how)
        return host.pid

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
        await self.supervisor.aclose()
        await self._local.aclose()
