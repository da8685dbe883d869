"""Engine host processes seen from watui: starting them, talking to them, noticing their end.

The :class:`Supervisor` places sessions in hosts (at most ``sessions_per_host`` each, starting
a host when none has room), stops a host once it is empty, and *drains* a host that has made
``recycle_connects`` connect attempts: it takes no new session, its sessions move to a fresh
host at their next connect, and it stops when the last one has left, giving back whatever
neonize leaked in it. A host whose pipe ends without being asked to stop has crashed: its
sessions are told at once (:meth:`HostProcess._ended`).

Each host holds a *slot*; a host that replaces a crashed, drained or stopped one takes the
lowest free slot. ``restarts`` counts the host processes that ran in that slot before it,
whatever ended them (a crash, recycling, an idle stop: each is a new process); ``crashes``
counts those of them that ended unasked (the pipe closed without watui stopping the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from watui.engines.base import EngineEvent
from watui.engines.hosts.wire import SPEC_ENV, WireError, decode_event, frame, read_frame
from watui.engines.spec import EngineSpec

if TYPE_CHECKING:
    from watui.models import EngineHost

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
"""Seconds a host gets to close its sessions and exit when stopped, before SIGKILL."""

STDERR_DRAIN = 0.5
"""Seconds a crashed host's stderr gets to be copied into the log before its sessions are told."""

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


class HostCrashed(RuntimeError):
    """A call could not finish: its engine host process ended."""


class Tenant(Protocol):
    """What a host knows of a session placed in it (:class:`~watui.engines.hosts.engine.HostedSession`)."""

    session_id: str

    def deliver(self, host: HostProcess, event: EngineEvent) -> None: ...
    def host_crashed(self, host: HostProcess, why: str) -> None: ...


def exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "its pipe closed"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class HostProcess:
    """One engine host child process: its pipe, its pending calls, its sessions."""

    def __init__(
        self, supervisor: Supervisor, number: int, slot: int, restarts: int, crashes: int = 0
    ) -> None:
        self.supervisor = supervisor
        self.id = f"host-{number}"
        self.slot = slot
        self.restarts = restarts
        self.crashes = crashes
        self.started_at = datetime.now(UTC)
        self.connects = 0
        self.sessions: dict[str, Tenant] = {}
        self.draining = False
        self.alive = True
        self.stopping = False
        self.proc: asyncio.subprocess.Process | None = None
        self.ended = asyncio.Event()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[bytes] = []
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._stderr: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._log = logging.getLogger(f"watui.engines.hosts.{self.id}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self, spec: EngineSpec) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watui.engines.hosts",
            env={**os.environ, SPEC_ENV: spec.dumps()},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group: a Ctrl-C or hangup in watui's terminal is watui's to
            # handle; a host ends when watui closes its pipe (or exits, which does the same).
            start_new_session=True,
            limit=2**20,
        )
        loop = asyncio.get_running_loop()
        self._stderr = loop.create_task(self._relay_stderr(), name=f"watui-{self.id}-stderr")
        self._tasks = [loop.create_task(self._read(), name=f"watui-{self.id}-pipe"), self._stderr]
        log.info("engine host %s started (pid %s, slot %s)", self.id, self.pid, self.slot)

    # ---------------------------------------------------------------- calls

    async def call(self, op: str, session_id: str = "", **args: Any) -> Any:
        """Run ``op`` in the host and return its value; raises what the host raised."""
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise HostCrashed(f"engine host {self.id} is not running")
        call_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._calls[call_id] = future
        self._post({"t": "call", "id": call_id, "op": op, "sid": session_id, "args": args})
        try:
            return await future
        finally:
            self._calls.pop(call_id, None)

    def send(self, op: str, **args: Any) -> None:
        """A call whose reply nobody waits for (``crash``)."""
        if self.alive:
            self._post({"t": "call", "id": 0, "op": op, "sid": "", "args": args})

    def _post(self, message: dict[str, Any]) -> None:
        """Queue a frame; everything queued in one turn of the loop goes out in one write."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(frame(message))

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is None or not self.alive or stdin.is_closing():
            return  # a call waiting on a reply is failed when the pipe's end is noticed
        with contextlib.suppress(OSError, RuntimeError):
            stdin.write(data)

    # ---------------------------------------------------------------- the pipe

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        reader = self.proc.stdout
        try:
            while (message := await read_frame(reader)) is not None:
                kind = message.get("t")
                if kind == "event":
                    tenant = self.sessions.get(str(message.get("sid")))
                    if tenant is not None:
                        tenant.deliver(self, decode_event(str(message.get("kind")), message.get("data") or {}))
                elif kind == "reply":
                    self._settle(message)
        except (WireError, ValueError, TypeError, KeyError):
            self._log.exception("engine host %s sent a broken frame; stopping it", self.id)
            self.kill()
        except Exception:
            self._log.exception("reading engine host %s failed", self.id)
            self.kill()
        finally:
            await self._ended()

    def _settle(self, message: dict[str, Any]) -> None:
        from watui.engines.base import EngineRefused

        future = self._calls.pop(int(message.get("id") or 0), None)
        if future is None or future.done():
            return
        if message.get("ok"):
            future.set_result(message.get("value"))
        elif message.get("refused"):
            future.set_exception(EngineRefused(str(message.get("error"))))
        else:
            future.set_exception(RuntimeError(str(message.get("error"))))

    async def _relay_stderr(self) -> None:
        """Whatever the host prints (its Python log, Go's own output) goes to watui's log."""
        assert self.proc is not None and self.proc.stderr is not None
        stderr = self.proc.stderr
        while True:
            try:
                line = await stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):  # an endless line: skip a chunk
                await stderr.read(2**16)
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if not text:
                continue
            first, _, rest = text.partition(" ")
            level = _LEVELS.get(first)
            if level is None:  # raw output (the Go runtime's): worth a look
                self._log.warning("%s", text)
            else:
                self._log.log(level, "%s", rest)

    async def _ended(self) -> None:
        """The pipe closed: reap the process, fail pending calls, tell the sessions."""
        self.alive = False
        returncode: int | None = None
        if self.proc is not None:
            try:
                returncode = await asyncio.wait_for(self.proc.wait(), 1.0)
            except TimeoutError:  # the pipe closed but the process lingers: end it
                self.kill()
                returncode = await self.proc.wait()
        if self._stderr is not None:
            # The host's last words (a Go panic's report) go to the log before its obituary.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._stderr), STDERR_DRAIN)
        why = exit_reason(returncode)
        for future in self._calls.values():
            if not future.done():
                future.set_exception(HostCrashed(f"the engine host ended ({why})"))
        self._calls.clear()
        if self._idle is not None:
            self._idle.cancel()
        crashed = not self.stopping
        if crashed:
            log.warning("engine host %s (pid %s) ended unexpectedly: %s; %d session(s) affected",
                        self.id, self.pid, why, len(self.sessions))
        else:
            log.info("engine host %s stopped (%s)", self.id, why)
        tenants = list(self.sessions.values())
        self.sessions.clear()
        self.supervisor.forget(self, crashed=crashed)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self.ended.set()
        if crashed:
            for tenant in tenants:
                try:
                    tenant.host_crashed(self, why)
                except Exception:
                    log.exception("telling session %s about the crash failed", tenant.session_id)

    # ---------------------------------------------------------------- ending

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Ask the host to close its sessions and exit (close its stdin); kill it if it hangs."""
        self.stopping = True
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.ended.wait(), STOP_GRACE)
        except TimeoutError:
            log.warning("engine host %s did not stop within %.0f s; killing it", self.id, STOP_GRACE)
            self.kill()
            await self.ended.wait()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task


class Supervisor:
    """Starts hosts on demand, places sessions in them, recycles and stops them."""

    def __init__(
        self,
        spec: EngineSpec,
        *,
        sessions_per_host: int,
        recycle_connects: int,
        idle_grace: float,
    ) -> None:
        self.spec = spec
        self.sessions_per_host = sessions_per_host
        self.recycle_connects = recycle_connects
        self.idle_grace = idle_grace
        self.live: list[HostProcess] = []
        self._slots: dict[int, HostProcess] = {}
        self._slot_runs: dict[int, int] = {}
        self._slot_crashes: dict[int, int] = {}
        self._numbers = itertools.count(1)
        self._lock = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    async def place(self, tenant: Tenant) -> HostProcess:
        """A host with room for ``tenant`` (started now if none has room); ``tenant`` is in it."""
        if self._closed:
            raise HostCrashed("the engine is shut down")
        async with self._lock:
            for slot in sorted(self._slots):
                host = self._slots[slot]
                if host.alive and not host.draining and len(host.sessions) < self.sessions_per_host:
                    break
            else:
                host = await self._spawn()
            host.sessions[tenant.session_id] = tenant
            if host._idle is not None:
                host._idle.cancel()
                host._idle = None
            return host

    async def _spawn(self) -> HostProcess:
        slot = next(n for n in itertools.count() if n not in self._slots)
        restarts = self._slot_runs.get(slot, 0)
        self._slot_runs[slot] = restarts + 1
        host = HostProcess(self, next(self._numbers), slot, restarts, self._slot_crashes.get(slot, 0))
        await host.start(self.spec)
        self._slots[slot] = host
        self.live.append(host)
        return host

    def count_connect(self, host: HostProcess) -> None:
        """One more connect attempt in ``host``; at the limit it drains into a fresh host."""
        host.connects += 1
        if host.connects >= self.recycle_connects and not host.draining:
            host.draining = True
            if self._slots.get(host.slot) is host:
                del self._slots[host.slot]
            log.info("engine host %s made %d connect attempts: draining it into a fresh one",
                     host.id, host.connects)

    def leave(self, tenant: Tenant, host: HostProcess) -> None:
        """``tenant`` no longer runs in ``host``; an empty host stops (a drained one at once)."""
        if host.sessions.get(tenant.session_id) is tenant:
            del host.sessions[tenant.session_id]
        if host.sessions or not host.alive or host.stopping:
            return
        if host.draining or self.idle_grace <= 0:
            self._stop_soon(host)
        elif host._idle is None:
            host._idle = asyncio.get_running_loop().call_later(self.idle_grace, self._stop_if_idle, host)

    def _stop_if_idle(self, host: HostProcess) -> None:
        host._idle = None
        if not host.sessions and host.alive and not host.stopping:
            self._stop_soon(host)

    def _stop_soon(self, host: HostProcess) -> None:
        if self._slots.get(host.slot) is host:
            del self._slots[host.slot]
        host.stopping = True
        task = asyncio.get_running_loop().create_task(host.stop(), name=f"watui-stop-{host.id}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def forget(self, host: HostProcess, *, crashed: bool = False) -> None:
        """``host`` has ended (stopped or, ``crashed``, unasked)."""
        if crashed:
            self._slot_crashes[host.slot] = self._slot_crashes.get(host.slot, 0) + 1
        if host in self.live:
            self.live.remove(host)
        if self._slots.get(host.slot) is host:
            del self._slots[host.slot]

    def describe(self) -> list[EngineHost]:
        from watui.models import EngineHost

        return [
            EngineHost(id=h.id, pid=h.pid, sessions=sorted(h.sessions), started_at=h.started_at,
                       connects=h.connects, restarts=h.restarts, crashes=h.crashes)
            for h in self.live
        ]

    def find(self, host_id: str) -> HostProcess | None:
        return next((h for h in self.live if h.id == host_id), None)

    async def aclose(self) -> None:
        self._closed = True
        hosts = list(self.live)
        await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)
        if self._stopping:
            await asyncio.gather(*tuple(self._stopping), return_exceptions=True)
