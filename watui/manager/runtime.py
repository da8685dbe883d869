"""Running sessions: each has a :class:`Runtime` (engine session, inbox, one task), supervised here.

The task handles what the engine reports and what the timers say, one item at a time, under
the session's lock (the same one service calls take), so a session's transitions happen one
after another. Stopped sessions have no runtime and no task. Timers (QR expiry, pairing
timeout, reconnect back-off) are clock callbacks that drop an item into the inbox, so no task
sleeps per session and a fake clock can drive them in tests. Engine hosts plug in below the
engine: the supervisor only asks the engine for sessions and releases them.

What an item *means* is the lifecycle's business (watui/manager/lifecycle.py, the
:class:`Handler`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from watui.clock import Clock, TimerHandle
from watui.config import Settings
from watui.engines.base import Engine, EngineEvent, EngineSession
from watui.errors import EngineFailure, InvalidTransition, LeaseLost, StoreUnavailable
from watui.manager.engine_options import session_options
from watui.manager.placement import LocalPlacement, Placement
from watui.manager.registry import Registry
from watui.models import MessageStatus, PairCode, Session

log = logging.getLogger(__name__)

ENGINE_CALL_TIMEOUT = 30.0


class TimerKind(StrEnum):
    QR = "qr"
    """The QR code (or pairing code) on screen expires."""
    PAIRING = "pairing"
    """The whole link (or a linked session's first connect) took too long."""
    RECONNECT = "reconnect"
    """The back-off before the next reconnect attempt is over."""


@dataclass(frozen=True, slots=True)
class _Timer:
    kind: TimerKind
    token: int


@dataclass(frozen=True, slots=True)
class _Marker:
    future: asyncio.Future[None]


_STOP = object()


class Runtime:
    """What a running session holds besides its snapshot."""

    __slots__ = (
        "early_receipts",
        "engine_session",
        "handling",
        "inbox",
        "last_error",
        "on_settled",
        "pair_code_phone",
        "pair_phone",
        "pair_waiters",
        "qr_attempt",
        "qr_codes",
        "qr_expired",
        "qr_text",
        "reconnect_attempts",
        "session_id",
        "task",
        "timers",
        "token",
    )

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.engine_session: EngineSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.handling = False
        self.timers: dict[TimerKind, tuple[TimerHandle, int]] = {}
        self.token = 0
        self.qr_attempt = 1
        self.qr_codes = 0
        self.qr_text: str | None = None
        self.qr_expired = False
        self.pair_phone: str | None = None
        """Ask for a pairing code for this number as soon as the socket is up."""
        self.pair_code_phone: str | None = None
        """The number the current pairing code is for (a new round asks for it again)."""
        self.early_receipts: OrderedDict[str, MessageStatus] = OrderedDict()
        """Receipts that came before their message was stored (see watui/manager/messaging.py)."""
        self.on_settled: Callable[[], None] | None = None
        """Called once at the first outcome of a restore connect (see watui/manager/restore.py)."""
        self.pair_waiters: list[asyncio.Future[PairCode]] = []
        self.reconnect_attempts = 0
        self.last_error: str | None = None

    def report(self, event: EngineEvent) -> None:
        self.inbox.put_nowait(event)


class Handler(Protocol):
    """What a runtime's task hands its items to (the session lock is held)."""

    async def on_engine(self, runtime: Runtime, event: EngineEvent) -> None: ...

    async def on_timer(self, runtime: Runtime, kind: TimerKind) -> None: ...


class Supervisor:
    def __init__(self, settings: Settings, engine: Engine, clock: Clock, registry: Registry) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.registry = registry
        self.runtimes: dict[str, Runtime] = {}
        self.handler: Handler | None = None
        """Set once by the manager (the lifecycle needs the supervisor, and back)."""
        self.background: set[asyncio.Task[None]] = set()
        self.handling = 0
        """Items being handled right now, across every runtime (ended ones included)."""
        self.placement: Placement = LocalPlacement()
        """Where sessions run (a cluster node's leases; set by the manager)."""
        self.on_lease_lost: Callable[[str], Coroutine[Any, Any, None]] | None = None
        """Cluster mode: called when a write was refused because another node took the
        session over (set by the manager, which drops the session)."""

    def spawn(self, session: Session) -> Runtime:
        """Open an engine session for ``session`` and start its task; it takes an active slot."""
        runtime = Runtime(session.id)
        runtime.engine_session = self.engine.session(
            session.id, runtime.report, auth_path=self.settings.auth_path(session.id),
            options=session_options(self.settings, session),
        )
        self.runtimes[session.id] = runtime
        self.registry.take_slot(session.owner, session.id)
        runtime.task = asyncio.get_running_loop().create_task(
            self._run(runtime), name=f"watui-session-{session.id}"
        )
        return runtime

    async def teardown(self, runtime: Runtime) -> None:
        """Cancel the runtime's timers, close its engine session, end its task."""
        session_id = runtime.session_id
        if self.runtimes.get(session_id) is runtime:
            del self.runtimes[session_id]
        session = self.registry.sessions.get(session_id)
        if session is not None:
            self.registry.release_slot(session.owner, session_id)
        for timer, _ in runtime.timers.values():
            timer.cancel()
        runtime.timers.clear()
        for waiter in runtime.pair_waiters:
            if not waiter.done():
                waiter.set_exception(EngineFailure(runtime.last_error or "the session stopped before a code was issued"))
        runtime.pair_waiters.clear()
        self.settled(runtime)
        if runtime.engine_session is not None:
            engine_session, runtime.engine_session = runtime.engine_session, None
            try:
                await asyncio.wait_for(engine_session.close(), ENGINE_CALL_TIMEOUT)
            except Exception:
                log.exception("closing the engine session of %s failed", session_id)
            release = getattr(self.engine, "release", None)
            if release is not None:
                release(session_id)
        try:
            await self.placement.release(session_id)
        except Exception as exc:  # the lease then lapses by itself within its TTL
            log.warning("releasing %s's placement failed: %s", session_id, exc)
        runtime.inbox.put_nowait(_STOP)
        task = runtime.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def in_background(self, call: Coroutine[Any, Any, None]) -> None:
        """Run ``call`` after the item being handled (a runtime's own task cannot wait for its
        own teardown); ``drain_all`` waits for it."""
        task = asyncio.get_running_loop().create_task(call)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def finish_later(self, runtime: Runtime) -> None:
        """Tear ``runtime`` down after the item being handled."""
        self.in_background(self.teardown(runtime))

    @staticmethod
    def settled(runtime: Runtime) -> None:
        callback, runtime.on_settled = runtime.on_settled, None
        if callback is not None:
            callback()

    # ---------------------------------------------------------------- timers

    def arm(self, runtime: Runtime, kind: TimerKind, delay: float) -> None:
        """(Re)start the ``kind`` timer; one that was armed before will be ignored if it fires."""
        self.disarm(runtime, kind)
        runtime.token += 1
        item = _Timer(kind, runtime.token)
        handle = self.clock.call_later(delay, lambda: runtime.inbox.put_nowait(item))
        runtime.timers[kind] = (handle, item.token)

    def disarm(self, runtime: Runtime, kind: TimerKind) -> None:
        armed = runtime.timers.pop(kind, None)
        if armed is not None:
            armed[0].cancel()

    # ---------------------------------------------------------------- the inbox loop

    async def _run(self, runtime: Runtime) -> None:
        while True:
            item = await runtime.inbox.get()
            if item is _STOP:
                return
            if isinstance(item, _Marker):
                if not item.future.done():
                    item.future.set_result(None)
                continue
            runtime.handling = True
            self.handling += 1
            try:
                async with self.registry.lock(runtime.session_id):
                    if self.runtimes.get(runtime.session_id) is not runtime:
                        return
                    await self._handle(runtime, item)
            finally:
                runtime.handling = False
                self.handling -= 1

    async def _handle(self, runtime: Runtime, item: Any) -> None:
        assert self.handler is not None
        try:
            if isinstance(item, _Timer):
                armed = runtime.timers.get(item.kind)
                if armed is not None and armed[1] == item.token:  # else re-armed or disarmed since
                    runtime.timers.pop(item.kind, None)
                    await self.handler.on_timer(runtime, item.kind)
            else:
                await self.handler.on_engine(runtime, item)
        except InvalidTransition as exc:
            log.debug("ignored %r for %s: %s", item, runtime.session_id, exc.message)
        except LeaseLost:
            log.warning("session %s moved to another node; dropping it here", runtime.session_id)
            if self.on_lease_lost is not None:
                self.in_background(self.on_lease_lost(runtime.session_id))
        except StoreUnavailable as exc:  # the store logs the outage itself; no traceback here
            log.warning("session %s could not record %r: %s", runtime.session_id, item, exc.message)
        except Exception:
            log.exception("session %s failed to handle %r", runtime.session_id, item)

    async def drain(self, session_id: str) -> None:
        """Wait until the session's runtime has handled everything queued so far."""
        runtime = self.runtimes.get(session_id)
        if runtime is None or runtime.task is None or runtime.task.done():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runtime.inbox.put_nowait(_Marker(future))
        await asyncio.wait({future, runtime.task}, return_when=asyncio.FIRST_COMPLETED)

    async def drain_all(self, elsewhere_busy: Callable[[], bool]) -> None:
        """Wait until no runtime has anything left to handle and ``elsewhere_busy`` says no."""
        while True:
            busy = [i for i, r in self.runtimes.items() if r.handling or not r.inbox.empty()]
            if busy or self.background:
                await asyncio.gather(*(self.drain(i) for i in busy), *tuple(self.background))
            elif self.handling or elsewhere_busy():
                # A handler whose runtime just ended (teardown) is still writing, or the
                # start-up restore is between two connects.
                await asyncio.sleep(0.001)
            else:
                return
