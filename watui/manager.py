"""The session manager: runs every session, applies the state machine, owns the timers.

Each running session has a :class:`Runtime`: its engine session, an inbox, and one asyncio
task that handles what the engine reports and what the timers say, one item at a time.
Service calls (start, stop, ...) and the runtime task take the same per-session lock, so a
session's transitions happen one after another and each is persisted and published before
the next is applied. Stopped sessions have no runtime and no task.

Timers (QR expiry, pairing timeout, reconnect back-off) are clock callbacks that drop an
item into the inbox, so no task sleeps per session and a fake clock can drive them in tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from watui import messaging
from watui.bus import BusSubscription, EventBus
from watui.clock import Clock, FakeClock, RealClock, TimerHandle
from watui.config import Settings
from watui.datadir import DataDirLock, open_data_dir
from watui.engines.base import (
    Engine,
    EngineEvent,
    EngineRefused,
    EngineSession,
    IncomingMessage,
    LoggedOut,
    MessageReceipt,
    PairingWindowClosed,
    PairSuccess,
    PhoneAction,
    QrCodeIssued,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)
from watui.engines.factory import build_engine
from watui.errors import (
    Conflict,
    EngineFailure,
    Forbidden,
    InvalidTransition,
    NotFound,
    QrNotAvailable,
    SessionLimitReached,
    SessionNotConnected,
    SessionNotFound,
    StoreUnavailable,
    ValidationFailed,
)
from watui.machine import RUNNING, STARTABLE, EventType, Status, Trigger, transition
from watui.models import (
    Caller,
    EngineHost,
    Event,
    LinkMethod,
    Message,
    MessageDirection,
    MessagePage,
    MessageStatus,
    NewEvent,
    PairCode,
    QrCode,
    RestoreProgress,
    Session,
    SessionCreate,
    SessionPage,
    SessionSettings,
    SessionUpdate,
    SimulateRequest,
    isoformat,
    normalize_phone,
)
from watui.restore import Restorer
from watui.retention import Retention
from watui.store import NewMessage, Store, WriteResult
from watui.webhooks import WebhookDeliveryPage, WebhookDispatcher, list_deliveries

log = logging.getLogger(__name__)

ENGINE_CALL_TIMEOUT = 30.0
PAIR_CODE_WAIT = 30.0


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True, slots=True)
class _Timer:
    kind: str  # "qr" | "pairing" | "reconnect"
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
        self.timers: dict[str, tuple[TimerHandle, int]] = {}
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
        """Receipts that came before their message was stored (see watui/messaging.py)."""
        self.on_settled: Callable[[], None] | None = None
        """Called once at the first outcome of a restore connect (see watui/restore.py)."""
        self.pair_waiters: list[asyncio.Future[PairCode]] = []
        self.reconnect_attempts = 0
        self.last_error: str | None = None

    def report(self, event: EngineEvent) -> None:
        self.inbox.put_nowait(event)


class SessionManager:
    def __init__(self, settings: Settings, store: Store, engine: Engine, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.clock = clock
        self.bus = EventBus(store, queue_size=settings.subscriber_queue_size)
        self._sessions: dict[str, Session] = {}
        self._names: dict[tuple[str, str], str] = {}
        """(owner, name) -> session id: names are unique per owner, checked in O(1)."""
        self._runtimes: dict[str, Runtime] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._active: dict[str, set[str]] = {}
        self._rng = random.Random()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._handling = 0
        self.on_session_change: list[Callable[[Session], None]] = []
        self.webhooks: WebhookDispatcher | None = None
        self.prerender_qr = False
        """Draw each QR code's PNG in another process before its event is made. The server
        turns it on (every SSE client and webhook of the code needs the PNG at once); the
        console alone draws half blocks, not PNGs, and leaves it off."""
        self.restore_progress: RestoreProgress | None = None
        """Set while start-up restore is under way (``done`` of ``total`` connects made)."""
        self._restorer = Restorer(self, concurrency=settings.restore_concurrency)
        self.retention: Retention | None = None
        self.data_lock: DataDirLock | None = None
        """This process's hold on the data dir (set by :meth:`open`)."""

    # ================================================================ lifecycle

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Clock | None = None,
        restore: bool = True,
    ) -> SessionManager:
        """Open the store, then restore the sessions that were running, in the background.

        Returns before the restore is done (see watui/restore.py): a server answers while
        hundreds of sessions reconnect a few at a time.
        """
        clock = clock or RealClock()
        lock, store = await open_data_dir(settings)
        try:
            manager = cls(settings, store, engine or build_engine(settings, clock), clock)
        except BaseException:
            await store.close()
            lock.release()
            raise
        manager.data_lock = lock
        if isinstance(clock, FakeClock):
            clock.idle = manager.drain_all
        for session in await store.load_sessions():
            manager._sessions[session.id] = session
            manager._names[(session.owner, session.name)] = session.id
        # Before anything is written: every event from here on is queued for its webhook.
        manager.webhooks = WebhookDispatcher(store, settings, sessions=manager._sessions, clock=clock)
        manager.webhooks.start()
        manager.retention = Retention(store, settings, clock)
        manager.retention.start()
        if restore:
            manager._restorer.start()
        return manager

    async def _park_crashed(self, session_id: str) -> None:
        """A session still marked running at start-up: the process ended while it ran."""
        async with self._lock(session_id):
            session = self._sessions.get(session_id)
            if session is not None and session.status in RUNNING and session_id not in self._runtimes:
                await self._apply(session, Trigger.SHUTDOWN, reason="restart")

    async def _restore_one(self, session_id: str, *, delay: float, on_settled: Callable[[], None]) -> bool:
        """Bring one parked session back; True if ``on_settled`` will be called at its outcome.

        A linked session reconnects after ``delay`` (the restore's jitter); one that was
        pairing starts over with fresh codes.
        """
        async with self._lock(session_id):
            session = self._sessions.get(session_id)
            if (
                self._closing or session is None or not session.autostart
                or session.status is not Status.DISCONNECTED or session_id in self._runtimes
            ):
                return False  # stopped, started or deleted meanwhile
            if session.linked and self.engine.has_auth(session.id, self.settings.auth_path(session.id)):
                runtime = self._spawn(session)
                runtime.on_settled = on_settled
                self._schedule_reconnect(runtime, session, delay=delay)
                return True
            await self._start_locked(session, caller=None)
            started = self._runtimes.get(session_id)
            if started is None:
                return False  # the start failed at once
            started.on_settled = on_settled
            return True

    async def aclose(self) -> None:
        """Stop every task, park running sessions so start-up resumes them, flush the store."""
        if self._closing:
            return
        self._closing = True
        await self._restorer.aclose()
        ids = list(self._runtimes)

        async def park(session_id: str) -> None:
            async with self._lock(session_id):
                runtime = self._runtimes.get(session_id)
                if runtime is None:
                    return
                await self._teardown(runtime)
                session = self._sessions[session_id]
                if session.status in RUNNING:
                    await self._apply(
                        session, Trigger.SHUTDOWN, reason="shutdown",
                        changes=self._cleared_link_state(),
                    )

        for start in range(0, len(ids), 500):
            await asyncio.gather(*(park(i) for i in ids[start : start + 500]), return_exceptions=True)
        await self.bus.close()
        with contextlib.suppress(Exception):
            await self.engine.aclose()
        if self.webhooks is not None:
            await self.webhooks.aclose()
        if self.retention is not None:
            await self.retention.aclose()
        try:
            await self.store.close()
        finally:
            if self.data_lock is not None:
                self.data_lock.release()

    def service(self, caller: Caller) -> ScopedService:
        return ScopedService(self, caller)

    @property
    def simulated(self) -> bool:
        """True when the engine can play the phone (the simulated one, inline or hosted)."""
        return self.engine.plays_phone

    # ================================================================ helpers

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    def visible(self, caller: Caller, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or not (caller.admin or session.owner == caller.owner):
            raise SessionNotFound(session_id)
        return session

    def active_count(self, owner: str) -> int:
        return len(self._active.get(owner, ()))

    @staticmethod
    def _cleared_link_state() -> dict[str, Any]:
        return {"qr_expires_at": None, "qr_generation": 0, "pair_code": None, "pair_code_expires_at": None}

    def _payload(
        self, kind: EventType, old: Session, new: Session, reason: str | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        if kind is EventType.STATUS:
            return {"from": old.status.value, "to": new.status.value, "reason": reason}
        if kind is EventType.CONNECTED:
            return {"phone_number": new.phone_number, "push_name": new.push_name, "jid": new.jid}
        if kind is EventType.DISCONNECTED:
            return {"reason": reason, **extra}
        if kind is EventType.ERROR:
            return {"code": extra.get("code", reason or "error"), "message": extra.get("message", reason or "")}
        if kind is EventType.DELETED:
            return {"name": old.name}
        return dict(extra)

    async def _apply(
        self,
        session: Session,
        trigger: Trigger,
        *,
        reason: str | None = None,
        changes: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        before: list[NewEvent] | None = None,
    ) -> Session:
        """Apply ``trigger``, persist the new snapshot with its events, then publish them.

        If the write fails, memory is left as it was and the error (``StoreUnavailable``)
        propagates. ``before``: events written first in the same transaction.
        """
        result = transition(session.status, trigger)
        now = self.clock.now()
        update: dict[str, Any] = {"updated_at": now, **(changes or {})}
        if result.target is not None:
            update["status"] = result.target
            if result.changes_status or trigger in (Trigger.RECONNECT_FAILED, Trigger.LOGGED_OUT):
                update["reason"] = reason
        new = session.model_copy(update=update)
        events = [
            NewEvent(
                type=kind, session_id=session.id, owner=session.owner, timestamp=now,
                payload=self._payload(kind, session, new, reason, extra or {}),
            )
            for kind in result.events
        ]
        events = [*(before or ()), *events]
        if result.target is None:
            # Removed from memory only after the write, so hooks (the webhook outbox) that run
            # while the transaction is assembled still see the session's settings.
            await self.store.write(events=events, deleted=[session.id])
            self._sessions.pop(session.id, None)
            self._release_name(session)
        else:
            await self._write_snapshot(session, new, events=events)
        return new

    async def _save(self, session: Session, **changes: Any) -> Session:
        """Persist a change that is no transition (counters, settings)."""
        new = session.model_copy(update={"updated_at": self.clock.now(), **changes})
        await self._write_snapshot(session, new)
        return new

    async def _write_snapshot(
        self, old: Session, new: Session, *, events: list[NewEvent] | None = None,
        messages: list[NewMessage] | None = None,
    ) -> WriteResult:
        """Put ``new`` in memory, write it (with ``events`` and ``messages``), then notify.

        Memory changes first so hooks that run while the transaction is assembled (the webhook
        outbox) see the new snapshot; a write that fails puts ``old`` back, so memory and disk
        always agree. A cancelled write is not undone: it may still commit.
        """
        self._sessions[new.id] = new
        try:
            result = await self.store.write(events=events or (), sessions=[new], messages=messages or ())
        except Exception:
            if self._sessions.get(new.id) is new:
                self._sessions[new.id] = old
            raise
        self._notify(new)
        return result

    def _notify(self, session: Session) -> None:
        for callback in self.on_session_change:
            callback(session)

    # ================================================================ runtimes

    def _spawn(self, session: Session) -> Runtime:
        runtime = Runtime(session.id)
        runtime.engine_session = self.engine.session(
            session.id, runtime.report, auth_path=self.settings.auth_path(session.id)
        )
        self._runtimes[session.id] = runtime
        self._active.setdefault(session.owner, set()).add(session.id)
        runtime.task = asyncio.get_running_loop().create_task(
            self._run(runtime), name=f"watui-session-{session.id}"
        )
        return runtime

    async def _teardown(self, runtime: Runtime) -> None:
        """Cancel the runtime's timers, close its engine session, end its task."""
        session_id = runtime.session_id
        if self._runtimes.get(session_id) is runtime:
            del self._runtimes[session_id]
        session = self._sessions.get(session_id)
        if session is not None:
            self._release_slot(session.owner, session_id)
        for timer, _ in runtime.timers.values():
            timer.cancel()
        runtime.timers.clear()
        for waiter in runtime.pair_waiters:
            if not waiter.done():
                waiter.set_exception(EngineFailure(runtime.last_error or "the session stopped before a code was issued"))
        runtime.pair_waiters.clear()
        self._settled(runtime)
        if runtime.engine_session is not None:
            engine_session, runtime.engine_session = runtime.engine_session, None
            try:
                await asyncio.wait_for(engine_session.close(), ENGINE_CALL_TIMEOUT)
            except Exception:
                log.exception("closing the engine session of %s failed", session_id)
            release = getattr(self.engine, "release", None)
            if release is not None:
                release(session_id)
        runtime.inbox.put_nowait(_STOP)
        task = runtime.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _release_slot(self, owner: str, session_id: str) -> None:
        """The session no longer counts against its owner's active sessions."""
        owners = self._active.get(owner)
        if owners is not None:
            owners.discard(session_id)
            if not owners:
                del self._active[owner]

    @staticmethod
    def _settled(runtime: Runtime) -> None:
        callback, runtime.on_settled = runtime.on_settled, None
        if callback is not None:
            callback()

    def _arm(self, runtime: Runtime, kind: str, delay: float) -> None:
        self._disarm(runtime, kind)
        runtime.token += 1
        item = _Timer(kind, runtime.token)
        handle = self.clock.call_later(delay, lambda: runtime.inbox.put_nowait(item))
        runtime.timers[kind] = (handle, item.token)

    def _disarm(self, runtime: Runtime, kind: str) -> None:
        armed = runtime.timers.pop(kind, None)
        if armed is not None:
            armed[0].cancel()

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
            self._handling += 1
            try:
                async with self._lock(runtime.session_id):
                    if self._runtimes.get(runtime.session_id) is not runtime:
                        return
                    await self._handle(runtime, item)
            finally:
                runtime.handling = False
                self._handling -= 1

    async def _handle(self, runtime: Runtime, item: Any) -> None:
        try:
            if isinstance(item, _Timer):
                armed = runtime.timers.get(item.kind)
                if armed is not None and armed[1] == item.token:  # else re-armed or disarmed since
                    await self._on_timer(runtime, item)
            else:
                await self._on_engine(runtime, item)
        except InvalidTransition as exc:
            log.debug("ignored %r for %s: %s", item, runtime.session_id, exc.message)
        except StoreUnavailable as exc:  # the store logs the outage itself; no traceback here
            log.warning("session %s could not record %r: %s", runtime.session_id, item, exc.message)
        except Exception:
            log.exception("session %s failed to handle %r", runtime.session_id, item)

    async def drain(self, session_id: str) -> None:
        """Wait until the session's runtime has handled everything queued so far."""
        runtime = self._runtimes.get(session_id)
        if runtime is None or runtime.task is None or runtime.task.done():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runtime.inbox.put_nowait(_Marker(future))
        await asyncio.wait({future, runtime.task}, return_when=asyncio.FIRST_COMPLETED)

    async def drain_all(self) -> None:
        """Wait until no runtime has anything left to handle (tests and benchmarks)."""
        while True:
            busy = [i for i, r in self._runtimes.items() if r.handling or not r.inbox.empty()]
            if busy or self._background:
                await asyncio.gather(*(self.drain(i) for i in busy), *tuple(self._background))
            elif self._handling or self._restorer.busy:
                # A handler whose runtime just ended (teardown) is still writing, or the
                # start-up restore is between two connects.
                await asyncio.sleep(0.001)
            else:
                return

    # ================================================================ engine facts

    async def _on_engine(self, runtime: Runtime, event: EngineEvent) -> None:
        session = self._sessions[runtime.session_id]
        if not isinstance(event, IncomingMessage | MessageReceipt):
            self._settled(runtime)  # the connect has an outcome: the restore may go on
        match event:
            case QrCodeIssued(code=code):
                if self.prerender_qr and runtime.pair_phone is None and \
                        session.status in (Status.INITIALIZING, Status.QR_READY):
                    # A code to show: drawn before its event exists, off the event loop, so
                    # every SSE frame and webhook of it reads the cached PNG.
                    from watui.qr import prerender

                    await prerender(code)
                    current = self._sessions.get(runtime.session_id)
                    if current is None:
                        return
                    session = current
                await self._on_qr(runtime, session, code)
            case PairSuccess(jid=jid, phone_number=phone):
                self._disarm(runtime, "qr")
                runtime.qr_text = None
                await self._apply(
                    session, Trigger.PAIR_SUCCESS, changes={"jid": jid, "phone_number": phone, **self._cleared_link_state()}
                )
            case SessionConnected(jid=jid, phone_number=phone, push_name=push_name):
                await self._on_connected(runtime, session, jid, phone, push_name)
            case SessionDisconnected(reason=reason):
                await self._on_disconnected(runtime, session, reason)
            case LoggedOut(reason=reason):
                await self._teardown(runtime)
                await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
                await self._apply(
                    session, Trigger.LOGGED_OUT, reason=reason or "logged_out",
                    changes={"linked": False, "jid": None, "autostart": False, "reconnect_attempts": 0,
                             **self._cleared_link_state()},
                )
            case SessionError(message=message, code=code):
                await self._on_error(runtime, session, message, code)
            case PairingWindowClosed():
                await self._on_link_window_closed(runtime, session)
            case IncomingMessage():
                await messaging.on_message(self, session, event)
            case MessageReceipt():
                await messaging.on_receipt(self, session, event, runtime.early_receipts)

    async def _on_qr(self, runtime: Runtime, session: Session, code: str) -> None:
        if session.status not in (Status.INITIALIZING, Status.QR_READY) or session.pair_code:
            return
        if runtime.pair_phone is not None:
            # Link by phone number: the socket is up, ask for the code instead of showing QR.
            phone, runtime.pair_phone = runtime.pair_phone, None
            await self._issue_pair_code(runtime, session, phone)
            return
        runtime.qr_codes += 1
        ttl = self.settings.qr_first_ttl if runtime.qr_codes == 1 else self.settings.qr_next_ttl
        expires = self.clock.now() + timedelta(seconds=ttl)
        runtime.qr_text = code
        runtime.qr_expired = False
        await self._apply(
            session, Trigger.QR_CODE,
            changes={"qr_generation": runtime.qr_codes, "qr_attempt": runtime.qr_attempt, "qr_expires_at": expires},
            extra={
                "qr_text": code, "generation": runtime.qr_codes, "attempt": runtime.qr_attempt,
                "codes_per_attempt": self.settings.qr_codes_per_attempt, "expires_at": isoformat(expires),
            },
        )
        self._arm(runtime, "qr", ttl)

    async def _issue_pair_code(self, runtime: Runtime, session: Session, phone: str) -> None:
        assert runtime.engine_session is not None
        try:
            code = await asyncio.wait_for(runtime.engine_session.pair_phone(phone), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            message = f"pairing code request failed: {exc}"
            for waiter in runtime.pair_waiters:
                if not waiter.done():
                    waiter.set_exception(EngineFailure(message))
            runtime.pair_waiters.clear()
            return
        runtime.qr_text = None
        runtime.pair_code_phone = phone
        expires = self.clock.now() + timedelta(seconds=self.settings.pair_code_ttl)
        self._arm(runtime, "qr", self.settings.pair_code_ttl)  # the code's life (whatsmeow: 160 s)
        session = await self._apply(
            session, Trigger.PAIR_CODE,
            changes={"pair_code": code, "pair_code_expires_at": expires, "link_method": LinkMethod.PHONE,
                     "qr_expires_at": None, "qr_generation": 0},
            extra={"code": code, "expires_at": isoformat(expires), "phone_number": phone},
        )
        result = PairCode(session_id=session.id, code=code, expires_at=expires)
        for waiter in runtime.pair_waiters:
            if not waiter.done():
                waiter.set_result(result)
        runtime.pair_waiters.clear()

    async def _on_connected(
        self, runtime: Runtime, session: Session, jid: str, phone: str, push_name: str
    ) -> None:
        now = self.clock.now()
        reconnected = session.status is Status.DISCONNECTED
        changes: dict[str, Any] = {
            "jid": jid, "phone_number": phone, "push_name": push_name or session.push_name,
            "linked": True, "connected_at": now, "last_activity_at": now, "reconnect_attempts": 0,
            "qr_attempt": 0, **self._cleared_link_state(),
        }
        if reconnected:
            changes["reconnect_count"] = session.reconnect_count + 1
        await self._apply(session, Trigger.CONNECTED, changes=changes)
        for kind in ("qr", "pairing", "reconnect"):
            self._disarm(runtime, kind)
        runtime.qr_text = None
        runtime.reconnect_attempts = 0

    async def _on_disconnected(self, runtime: Runtime, session: Session, reason: str) -> None:
        if session.status in (Status.CONNECTED, Status.CONNECTING):
            session = await self._apply(session, Trigger.CONNECTION_LOST, reason=reason)
            self._after_connection_lost(runtime, session)
        elif session.status is Status.DISCONNECTED:
            await self._reconnect_failed(runtime, session, reason)
        # While pairing, a dropped socket is the server closing the QR window: the QR timers
        # decide what happens next.

    def _after_connection_lost(self, runtime: Runtime, session: Session) -> None:
        # Another client took over this device's stream: reconnecting would only kick it off
        # again, and the two would fight for ever.
        replaced = session.reason == "stream_replaced"
        if (
            session.settings.auto_reconnect
            and session.linked
            and session.settings.max_reconnect_attempts > 0
            and not replaced
        ):
            self._schedule_reconnect(runtime, session)
        else:
            # No reconnect: the runtime ends here; ``start`` brings the session back.
            self._finish_later(runtime)

    def _finish_later(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(self._teardown(runtime))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_error(self, runtime: Runtime, session: Session, message: str, code: str) -> None:
        runtime.last_error = message
        if session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING):
            await self._teardown(runtime)
            await self._apply(
                session, Trigger.ENGINE_ERROR, reason=message,
                changes={"autostart": False, **self._cleared_link_state()},
                extra={"code": code, "message": message},
            )
        elif session.status is Status.CONNECTED:
            session = await self._apply(session, Trigger.CONNECTION_LOST, reason=message)
            self._after_connection_lost(runtime, session)
        elif session.status is Status.DISCONNECTED:
            await self._reconnect_failed(runtime, session, message)

    # ================================================================ timers

    async def _on_timer(self, runtime: Runtime, timer: _Timer) -> None:
        runtime.timers.pop(timer.kind, None)
        session = self._sessions[runtime.session_id]
        if timer.kind == "qr":
            await self._on_qr_expired(runtime, session)
        elif timer.kind == "pairing":
            if session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING):
                reason = "connect_timeout" if session.linked else "pairing_timeout"
                await self._teardown(runtime)
                await self._apply(
                    session, Trigger.PAIRING_TIMEOUT, reason=reason,
                    changes={"autostart": False, **self._cleared_link_state()},
                    extra={"code": reason, "message": self._timeout_message(session)},
                )
        elif timer.kind == "reconnect":
            await self._reconnect_now(runtime, session)

    def _timeout_message(self, session: Session) -> str:
        secs = int(self.settings.pairing_timeout)
        if session.linked:
            return f"could not reconnect within {secs} s"
        return f"no phone linked within {secs} s"

    async def _on_qr_expired(self, runtime: Runtime, session: Session) -> None:
        if session.status is not Status.QR_READY:
            return
        if session.pair_code:
            await self._on_link_round_over(runtime, session)  # the pairing code's life is over
            return
        runtime.qr_expired = True
        if runtime.qr_codes < self.settings.qr_codes_per_attempt:
            return  # the engine rotates to the next code
        # The last code of this connection expired: WhatsApp closes the pairing window.
        await self._on_link_round_over(runtime, session)

    async def _on_link_window_closed(self, runtime: Runtime, session: Session) -> None:
        """The engine says WhatsApp closed the linking window (codes ran out, socket dropped)."""
        if session.status is not Status.QR_READY:
            return
        if not session.pair_code and runtime.qr_codes == 0:
            return  # from the round before: a new round already began
        await self._on_link_round_over(runtime, session)

    async def _on_link_round_over(self, runtime: Runtime, session: Session) -> None:
        """No code on screen is valid any more: start a new round, or give up after the retries.

        QR codes: a new connection brings new codes. A pairing code: a new connection, and a
        new code for the same number as soon as its socket is up (the dead code is cleared at
        once, so nobody types it). After ``qr_max_retries`` new rounds the session fails with
        ``qr_timeout`` or ``pair_code_timeout``.
        """
        self._disarm(runtime, "qr")
        runtime.qr_text = None
        runtime.qr_expired = True
        phone = runtime.pair_code_phone if session.pair_code else None
        if runtime.qr_attempt <= self.settings.qr_max_retries:
            runtime.qr_attempt += 1
            runtime.qr_codes = 0
            if phone is not None:
                runtime.pair_phone = phone
                session = await self._save(session, pair_code=None, pair_code_expires_at=None,
                                           qr_attempt=runtime.qr_attempt)
            assert runtime.engine_session is not None
            await runtime.engine_session.disconnect()
            await self._engine_connect(runtime, session)
            return
        await self._teardown(runtime)
        rounds = runtime.qr_attempt
        if phone is not None:
            code = "pair_code_timeout"
            message = f"the pairing code was not entered on the phone ({rounds} codes, each valid {int(self.settings.pair_code_ttl)} s)"
        else:
            code = "qr_timeout"
            message = f"no phone scanned the QR code ({rounds} rounds of {self.settings.qr_codes_per_attempt} codes)"
        await self._apply(
            session, Trigger.QR_EXHAUSTED, reason=code,
            changes={"autostart": False, **self._cleared_link_state()},
            extra={"code": code, "message": message},
        )

    def _schedule_reconnect(self, runtime: Runtime, session: Session, delay: float | None = None) -> None:
        if delay is None:
            n = runtime.reconnect_attempts
            base = min(self.settings.reconnect_max_delay, self.settings.reconnect_base_delay * (2**n))
            # "Equal jitter": at least half the back-off, so attempts spread without bunching.
            delay = base / 2 + self._rng.uniform(0, base / 2)
        self._arm(runtime, "reconnect", delay)

    async def _reconnect_now(self, runtime: Runtime, session: Session) -> None:
        if session.status is not Status.DISCONNECTED:
            return
        runtime.reconnect_attempts += 1
        await self._save(session, reconnect_attempts=runtime.reconnect_attempts)
        assert runtime.engine_session is not None
        with contextlib.suppress(Exception):
            await runtime.engine_session.disconnect()
        try:
            await asyncio.wait_for(runtime.engine_session.connect(), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            await self._reconnect_failed(runtime, self._sessions[session.id], str(exc) or type(exc).__name__)

    async def _reconnect_failed(self, runtime: Runtime, session: Session, reason: str) -> None:
        limit = session.settings.max_reconnect_attempts
        if runtime.reconnect_attempts >= limit:
            await self._teardown(runtime)
            await self._apply(
                session, Trigger.RECONNECT_EXHAUSTED, reason="reconnect_exhausted",
                changes={"autostart": False},
                extra={"code": "reconnect_exhausted",
                       "message": f"gave up after {runtime.reconnect_attempts} reconnect attempts: {reason}"},
            )
            return
        session = await self._apply(
            session, Trigger.RECONNECT_FAILED, reason=reason,
            extra={"attempt": runtime.reconnect_attempts, "max_attempts": limit},
        )
        self._schedule_reconnect(runtime, session)

    # ================================================================ commands

    async def _engine_connect(self, runtime: Runtime, session: Session) -> None:
        assert runtime.engine_session is not None
        try:
            await asyncio.wait_for(runtime.engine_session.connect(), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            runtime.last_error = message
            await self._teardown(runtime)
            await self._apply(
                self._sessions[session.id], Trigger.ENGINE_ERROR, reason=message,
                changes={"autostart": False, **self._cleared_link_state()},
                extra={"code": "engine_error", "message": message},
            )

    def _check_limit(self, session: Session, caller: Caller | None) -> None:
        if caller is None or caller.admin or session.id in self._active.get(session.owner, ()):
            return  # already running, or its slot was reserved by ``create``
        limit = self.settings.max_active_sessions_per_owner
        if self.active_count(session.owner) >= limit:
            raise SessionLimitReached(
                f"Owner {session.owner!r} already has {limit} active sessions (the limit); stop one first",
                details={"owner": session.owner, "limit": limit},
            )

    async def _start_locked(
        self, session: Session, caller: Caller | None, *, pair_phone: str | None = None,
        created: NewEvent | None = None,
    ) -> Session:
        transition(session.status, Trigger.START)  # raises before anything is reserved
        self._check_limit(session, caller)
        stale = self._runtimes.get(session.id)
        if stale is not None:  # e.g. a disconnected session waiting to reconnect
            await self._teardown(stale)
        runtime = self._spawn(session)
        runtime.pair_phone = pair_phone
        try:
            session = await self._apply(
                session, Trigger.START,
                changes={
                    "autostart": True, "reconnect_attempts": 0, "qr_attempt": 1,
                    "link_method": LinkMethod.PHONE if pair_phone else session.link_method,
                    **self._cleared_link_state(),
                },
                before=[created] if created else None,
            )
        except Exception:
            await self._teardown(runtime)  # not started after all: free the slot
            raise
        self._arm(runtime, "pairing", self.settings.pairing_timeout)
        await self._engine_connect(runtime, session)
        return self._sessions.get(session.id, session)

    def _claim_name(self, owner: str, name: str, session_id: str) -> None:
        """Reserve ``name`` for ``session_id`` (synchronously, so two creates cannot both pass)."""
        other = self._names.get((owner, name))
        if other is not None and other != session_id:
            raise Conflict(f"A session named {name!r} already exists", details={"session_id": other})
        self._names[(owner, name)] = session_id

    def _release_name(self, session: Session) -> None:
        if self._names.get((session.owner, session.name)) == session.id:
            del self._names[(session.owner, session.name)]

    async def create(self, caller: Caller, spec: SessionCreate) -> Session:
        if spec.link_method is LinkMethod.PHONE and spec.start and not spec.phone_number:
            raise ValidationFailed("link_method=phone needs phone_number", details={"field": "phone_number"})
        settings = spec.settings
        if settings.webhook_url is not None and settings.webhook_secret is None:
            settings = settings.model_copy(update={"webhook_secret": new_webhook_secret()})
        now = self.clock.now()
        session = Session(
            id="ses_" + secrets.token_hex(8),
            name=spec.name,
            description=spec.description,
            owner=caller.owner,
            created_at=now,
            updated_at=now,
            link_method=spec.link_method,
            settings=settings,
        )
        created = NewEvent(
            type=EventType.STATUS, session_id=session.id, owner=session.owner, timestamp=now,
            payload={"from": None, "to": Status.STOPPED.value, "reason": "created"},
        )
        async with self._lock(session.id):
            # Check and reserve synchronously (before any await), so concurrent creates cannot
            # all pass; a refused create has changed nothing.
            if spec.start:
                self._check_limit(session, caller)
            self._claim_name(session.owner, session.name, session.id)
            if spec.start:
                self._active.setdefault(session.owner, set()).add(session.id)
            self._sessions[session.id] = session
            try:
                if spec.start:
                    # Created and started in one write: a failed write leaves no stopped phantom.
                    phone = spec.phone_number if spec.link_method is LinkMethod.PHONE else None
                    session = await self._start_locked(session, caller, pair_phone=phone, created=created)
                else:
                    await self.store.write(sessions=[session], events=[created])
                    self._notify(session)
            except Exception:
                if self._sessions.get(session.id) is session:
                    del self._sessions[session.id]
                    self._release_name(session)
                    self._release_slot(session.owner, session.id)
                raise
        return session

    async def start(self, caller: Caller, session_id: str) -> Session:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            return await self._start_locked(session, caller)

    async def _stop_locked(self, session: Session) -> Session:
        # Written first, torn down after (the lock keeps the runtime from acting in between):
        # a write that fails leaves the session running, as memory and disk both say.
        stopped = await self._apply(
            session, Trigger.STOP, reason="stopped",
            changes={"autostart": False, "reconnect_attempts": 0, **self._cleared_link_state()},
        )
        runtime = self._runtimes.get(session.id)
        if runtime is not None:
            await self._teardown(runtime)
        return stopped

    async def stop(self, caller: Caller, session_id: str) -> Session:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            return await self._stop_locked(self.visible(caller, session_id))

    async def restart(self, caller: Caller, session_id: str) -> Session:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            if session.status not in (Status.STOPPED, Status.FAILED):
                session = await self._stop_locked(session)
            return await self._start_locked(session, caller)

    async def _logout_locked(self, session: Session) -> Session:
        # Written first: if the write fails, nothing irreversible (the engine's logout, the
        # auth files) has happened yet.
        logged_out = await self._apply(
            session, Trigger.LOGOUT, reason="logged_out",
            changes={"linked": False, "jid": None, "autostart": False, "reconnect_attempts": 0,
                     **self._cleared_link_state()},
        )
        runtime = self._runtimes.get(session.id)
        if runtime is not None:
            if runtime.engine_session is not None and session.status is Status.CONNECTED:
                try:
                    await asyncio.wait_for(runtime.engine_session.logout(), ENGINE_CALL_TIMEOUT)
                except Exception:
                    log.warning("engine logout of %s failed; clearing local auth anyway", session.id, exc_info=True)
            await self._teardown(runtime)
        await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
        return logged_out

    async def logout(self, caller: Caller, session_id: str) -> Session:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            return await self._logout_locked(self.visible(caller, session_id))

    async def delete(self, caller: Caller, session_id: str) -> None:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            # Written first (the session, its messages and their events go in one
            # transaction): a write that fails leaves the session as it was, still linked.
            await self._apply(session, Trigger.DELETE, reason="deleted")
            self._release_slot(session.owner, session.id)
            runtime = self._runtimes.get(session.id)
            if runtime is not None:
                if session.linked and runtime.engine_session is not None and session.status is Status.CONNECTED:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(runtime.engine_session.logout(), ENGINE_CALL_TIMEOUT)
                await self._teardown(runtime)
            await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
        self._locks.pop(session_id, None)

    async def update(self, caller: Caller, session_id: str, patch: SessionUpdate) -> Session:
        self.visible(caller, session_id)
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            changes: dict[str, Any] = {}
            if patch.name is not None and patch.name != session.name:
                self._claim_name(session.owner, patch.name, session.id)
                self._release_name(session)
                changes["name"] = patch.name
            if patch.description is not None:
                changes["description"] = patch.description
            if patch.settings is not None:
                given = patch.settings.model_dump(exclude_unset=True)
                # null clears a webhook field; for the two flags it can only mean "no change".
                for flag in ("auto_reconnect", "max_reconnect_attempts"):
                    if given.get(flag, 0) is None:
                        del given[flag]
                merged = {**session.settings.model_dump(), **given}
                settings = SessionSettings.model_validate(merged)
                if settings.webhook_url is not None and settings.webhook_secret is None:
                    settings = settings.model_copy(update={"webhook_secret": new_webhook_secret()})
                changes["settings"] = settings
            if not changes:
                return session
            try:
                return await self._save(session, **changes)
            except Exception:
                if "name" in changes:  # give the old name back
                    self._release_name(session.model_copy(update={"name": changes["name"]}))
                    self._names[(session.owner, session.name)] = session.id
                raise

    async def request_pair_code(self, caller: Caller, session_id: str, phone_number: str) -> PairCode:
        try:
            phone = normalize_phone(phone_number)
        except ValueError as exc:
            raise ValidationFailed(str(exc), details={"field": "phone_number"}) from None
        self.visible(caller, session_id)
        waiter: asyncio.Future[PairCode] = asyncio.get_running_loop().create_future()
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            if session.status in (Status.CONNECTING, Status.CONNECTED) or (
                session.status is Status.DISCONNECTED and session.linked
            ):
                raise InvalidTransition(session.status.value, Trigger.PAIR_CODE.value)
            runtime = self._runtimes.get(session_id)
            if session.status in STARTABLE or runtime is None:
                session = await self._start_locked(session, caller, pair_phone=phone)
                runtime = self._runtimes.get(session_id)
                if runtime is None:
                    raise EngineFailure(f"the session could not start: {session.reason}")
                runtime.pair_waiters.append(waiter)
            elif session.status is Status.INITIALIZING:
                runtime.pair_phone = phone
                runtime.pair_waiters.append(waiter)
            else:  # qr_ready: the socket is up, ask now
                runtime.pair_waiters.append(waiter)
                await self._issue_pair_code(runtime, session, phone)
        try:
            return await asyncio.wait_for(waiter, PAIR_CODE_WAIT)
        except TimeoutError:
            raise EngineFailure("the engine issued no pairing code in time") from None

    async def get_qr(self, caller: Caller, session_id: str) -> QrCode:
        session = self.visible(caller, session_id)
        runtime = self._runtimes.get(session_id)
        if (
            session.status is not Status.QR_READY
            or runtime is None
            or runtime.qr_text is None
            or runtime.qr_expired
            or session.qr_expires_at is None
        ):
            raise QrNotAvailable(
                f"No QR code is up for this session (status {session.status.value})",
                details={"status": session.status.value},
            )
        from watui.qr import png_data_url

        return QrCode(
            session_id=session.id, qr_text=runtime.qr_text, qr_data=png_data_url(runtime.qr_text),
            generation=session.qr_generation, codes_per_attempt=self.settings.qr_codes_per_attempt,
            attempt=session.qr_attempt, expires_at=session.qr_expires_at,
        )

    async def send_message(self, caller: Caller, session_id: str, to: str, text: str) -> Message:
        try:
            chat = normalize_phone(to)
        except ValueError as exc:
            raise ValidationFailed(str(exc), details={"field": "to"}) from None
        if not text.strip():
            raise ValidationFailed("text must not be blank", details={"field": "text"})
        self.visible(caller, session_id)
        async with self._lock(session_id):
            session = self.visible(caller, session_id)
            runtime = self._runtimes.get(session_id)
            if session.status is not Status.CONNECTED or runtime is None or runtime.engine_session is None:
                raise SessionNotConnected(
                    f"Session {session.name!r} is {session.status.value}, not connected",
                    details={"status": session.status.value},
                )
            engine_session = runtime.engine_session
        # Sending happens outside the lock so a slow send cannot hold up the session's events.
        error: str | None = None
        message_id: str | None = None
        try:
            message_id = await asyncio.wait_for(engine_session.send_text(chat, text), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        async with self._lock(session_id):
            current = self._sessions.get(session_id)
            if current is None:
                raise SessionNotFound(session_id)
            session = current
            now = self.clock.now()
            status = MessageStatus.FAILED if error else MessageStatus.SENT
            counters = (
                {"messages_failed": session.messages_failed + 1}
                if error
                else {"messages_sent": session.messages_sent + 1, "last_activity_at": now}
            )
            new = session.model_copy(update={**counters, "updated_at": now})
            payload: dict[str, Any] = {"direction": "out", "chat": chat, "text": text, "message_id": message_id,
                                       "status": status.value}
            if error:
                payload["error"] = error
            result = await self._write_snapshot(
                session, new,
                messages=[NewMessage(session_id, MessageDirection.OUT, chat, text, message_id, status, error, now)],
                events=[NewEvent(type=EventType.MESSAGE, session_id=session_id, owner=session.owner,
                                 timestamp=now, payload=payload)],
            )
            runtime = self._runtimes.get(session_id)
            early = runtime.early_receipts.pop(message_id, None) if runtime and message_id else None
            if early is not None:  # the receipt overtook this write
                result.messages[0] = await messaging.advance(self, new, result.messages[0], early)
        if error:
            raise EngineFailure(f"Sending failed: {error}", details={"message": result.messages[0].model_dump(mode="json")})
        return result.messages[0]

    async def simulate(self, caller: Caller, session_id: str, request: SimulateRequest) -> Session:
        session = self.visible(caller, session_id)
        if not self.engine.plays_phone:
            raise NotFound("simulate exists only with the simulated engine")
        runtime = self._runtimes.get(session_id)
        if runtime is None or runtime.engine_session is None:
            raise InvalidTransition(session.status.value, f"simulate {request.action}")
        action = PhoneAction(request.action, reason=request.reason, chat=request.chat, text=request.text)
        try:
            await self.engine.play_phone(session_id, action)
        except EngineRefused as exc:
            raise InvalidTransition(session.status.value, f"simulate {request.action}") from exc
        await self.drain(session_id)
        return self._sessions.get(session_id, session)


class ScopedService:
    """The :class:`watui.service.SessionService` of one caller, in-process."""

    def __init__(self, manager: SessionManager, caller: Caller) -> None:
        self.manager = manager
        self.caller = caller

    @property
    def simulated(self) -> bool:
        return self.manager.simulated

    async def list_sessions(
        self,
        *,
        status: Status | None = None,
        query: str | None = None,
        limit: int | None = 20,
        offset: int = 0,
        sort: str = "created_at",
        descending: bool = False,
    ) -> SessionPage:
        caller = self.caller
        sessions = [
            s for s in self.manager._sessions.values()
            if (caller.admin or s.owner == caller.owner) and (status is None or s.status is status)
        ]
        if query:
            needle = query.casefold()
            sessions = [
                s for s in sessions
                if needle in s.name.casefold() or needle in (s.phone_number or "") or needle in s.status.value
            ]
        key = _SORT_KEYS.get(sort)
        if key is None:
            raise ValidationFailed(f"cannot sort by {sort!r}", details={"sort": sort})
        if sort == "created_at":
            # The dict keeps creation order already (loaded by rowid, new ones appended).
            if descending:
                sessions.reverse()
        else:
            sessions.sort(key=key, reverse=descending)
        total = len(sessions)
        page = sessions[offset : None if limit is None else offset + limit]
        return SessionPage(sessions=page, total=total)

    async def get_session(self, session_id: str) -> Session:
        return self.manager.visible(self.caller, session_id)

    async def create_session(self, spec: SessionCreate) -> Session:
        return await self.manager.create(self.caller, spec)

    async def update_session(self, session_id: str, patch: SessionUpdate) -> Session:
        return await self.manager.update(self.caller, session_id, patch)

    async def start(self, session_id: str) -> Session:
        return await self.manager.start(self.caller, session_id)

    async def stop(self, session_id: str) -> Session:
        return await self.manager.stop(self.caller, session_id)

    async def restart(self, session_id: str) -> Session:
        return await self.manager.restart(self.caller, session_id)

    async def logout(self, session_id: str) -> Session:
        return await self.manager.logout(self.caller, session_id)

    async def delete(self, session_id: str) -> None:
        await self.manager.delete(self.caller, session_id)

    async def request_pair_code(self, session_id: str, phone_number: str) -> PairCode:
        return await self.manager.request_pair_code(self.caller, session_id, phone_number)

    async def get_qr(self, session_id: str) -> QrCode:
        return await self.manager.get_qr(self.caller, session_id)

    async def send_message(self, session_id: str, to: str, text: str) -> Message:
        return await self.manager.send_message(self.caller, session_id, to, text)

    async def list_messages(self, session_id: str, *, limit: int = 50, offset: int = 0) -> MessagePage:
        self.manager.visible(self.caller, session_id)
        messages, total = await self.manager.store.list_messages(session_id, limit=limit, offset=offset)
        return MessagePage(messages=messages, total=total)

    async def list_webhook_deliveries(
        self, session_id: str, *, limit: int = 50, offset: int = 0
    ) -> WebhookDeliveryPage:
        self.manager.visible(self.caller, session_id)
        return await list_deliveries(self.manager.store, session_id, limit=limit, offset=offset)

    async def list_events(
        self, *, session_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        if session_id is not None:
            self.manager.visible(self.caller, session_id)
        owner = None if self.caller.admin else self.caller.owner
        return await self.manager.store.read_events(
            after_id=after_id, owner=owner, session_id=session_id, limit=limit
        )

    async def recent_events(self, session_id: str, *, limit: int = 50) -> list[Event]:
        self.manager.visible(self.caller, session_id)
        return await self.manager.store.recent_events(session_id, limit=limit)

    def subscribe(
        self,
        *,
        session_id: str | None = None,
        after_id: int | None = None,
        types: frozenset[EventType] | None = None,
    ) -> BusSubscription:
        if session_id is not None and session_id in self.manager._sessions:
            self.manager.visible(self.caller, session_id)
        owner = None if self.caller.admin else self.caller.owner
        return self.manager.bus.subscribe(owner=owner, session_id=session_id, after_id=after_id, types=types)

    async def simulate(self, session_id: str, request: SimulateRequest) -> Session:
        return await self.manager.simulate(self.caller, session_id, request)

    async def engine_hosts(self) -> list[EngineHost]:
        if not self.caller.admin:
            raise Forbidden("only an admin may list engine hosts")
        return self.manager.engine.hosts()

    @property
    def restore_progress(self) -> RestoreProgress | None:
        return self.manager.restore_progress


_SORT_KEYS: dict[str, Callable[[Session], Any]] = {
    "name": lambda s: s.name.casefold(),
    "status": lambda s: s.status.value,
    "phone_number": lambda s: s.phone_number or "",
    "last_activity_at": lambda s: s.last_activity_at or s.created_at,
    "created_at": lambda s: s.created_at,
}
