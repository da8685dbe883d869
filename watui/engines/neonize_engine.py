"""The real engine: one neonize (whatsmeow) client per watui session.

How neonize 0.5.2 behaves, and why this module is built the way it is:

* Everything goes through one blocking Go call, ``Neonize()``. It opens the auth database,
  connects, and then *never returns* while the link lives: it first loops over whatsmeow's
  QR channel (calling the QR callback for each code), then sits in an event loop calling the
  event callback. All of those callbacks arrive on the thread that made the call, never on
  the asyncio loop, so every fact hops over with ``loop.call_soon_threadsafe``.
* With no network ``Neonize()`` returns at once with whatsmeow's dial error; a network that
  swallows packets makes it wait for whatsmeow's own 60 s dial deadline (our watchdog reports
  sooner). Neonize itself never retries.
* After the QR loop ends without a link (timeout, pairing error, or our own disconnect),
  neonize's ``FetchMe`` polls for a device id forever, ignoring cancellation, so that call
  never returns. Neonize's own ``connect()`` helpers run ``Neonize()`` on a non-daemon thread
  (``NewClient``) or on the loop's default executor (``NewAClient``, one pinned worker per
  session): either would then block interpreter exit. We run it on our own *daemon* thread.
* ``Stop(uuid)`` deletes the client from a Go map. If that happens while the call can still
  reach ``FetchMe`` (i.e. before the event loop started), neonize later dereferences a nil
  client and the Go runtime kills the whole process. So a run is only ``Stop``-ped once its
  call returned or its event loop is up; earlier we only ``Disconnect`` it. Each attempt uses
  a fresh Go-side id, so a lingering attempt can never be confused with the next one.
* The Go side keeps its clients in plain maps without locks: two attempts registering at the
  same moment would be a fatal "concurrent map writes". Start-ups and ``Stop`` calls are
  therefore serialised by a process-wide lock (see :class:`_StartGate`). That lock cannot
  cover the reads Go's own goroutines make, which is why watui runs neonize in engine host
  processes by default (``WATUI_ENGINE_ISOLATION``): a crash costs one host, not watui.
* Attempts queue on that lock. An attempt closed while it queues leaves the queue without
  ever calling ``Neonize()`` (so it never dials: no zombie connection that would later resume
  on the same auth database and replace the live one), and its ``connect_timeout`` watchdog
  only starts once the attempt is past the lock.
* What leaks, and what does not. Each ``Neonize()`` call opens the auth database through a
  whatsmeow store that neonize's ``Stop`` never closes: one file descriptor and ~200 kB stay
  behind per attempt (measured: 50 refused dials, fds 16 → 66, threads flat), and no
  Python-side call can reach that Go object. Closing the descriptor from Python is not an
  option: POSIX locks are per process and file, so closing any descriptor of the database
  drops the locks of the live connection on it too, and SQLite could corrupt it. A QR round that ends
  unlinked leaves its thread and Go client polling ``FetchMe`` (stopping it there crashes
  neonize). Neither can be fixed in-process; watui limits how often it happens (attempts
  closed in the queue never call ``Neonize()``; keep-alive hiccups no longer reconnect; start-up
  restores a few sessions at a time) and engine hosts give the rest back by recycling a host
  after ``WATUI_HOST_RECYCLE_CONNECTS`` attempts.

**Cluster mode** (a ``database_url``): every session's whatsmeow store is the one PostgreSQL
database of the cluster. Neonize 0.5.2 passes its database string to Go, which opens it with
whatsmeow's ``sqlstore`` on the ``postgres`` driver (lib/pq) when it starts with ``postgres``
(``postgres://`` or ``postgresql://``), else as an SQLite file. ``Neonize()`` then picks the
device: by JID when one is given (``container.GetDevice``), a blank new one with
``new_device`` (``container.NewDevice``), else the first stored one. So watui keeps, per
session, the JID of its device in ``engine_auth`` (:mod:`watui.engines.auth`), written at
pair success before the link is reported; a connect passes that JID only once it checked the
device row exists (``GetDevice`` answers a missing JID with no device, and whatsmeow then
dereferences it: a Go panic), and a session without one links a new device. lib/pq defaults to
``sslmode=require``; a URL without ``sslmode`` gets ``prefer`` (what libpq and asyncpg do).

The neonize package is imported lazily: importing it loads an 18 MB Go runtime and calls
``logging.basicConfig``, which the simulated engine and the tests of other layers don't need.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import sqlite3
import threading
import uuid as uuidlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import asyncpg

from watui.engines.auth import PgAuthStore
from watui.engines.base import (
    EngineEvent,
    EngineRefused,
    PairSuccess,
    PhoneAction,
    QrCodeIssued,
    Report,
    SessionError,
)
from watui.engines.neonize_mapping import (
    ends_connection,
    map_event,
    map_login_status,
    outgoing_text,
)

if TYPE_CHECKING:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import JID, Device

    from watui.models import EngineHost

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds to wait for the first sign of life (a QR code or a resumed link) before failing."""

# Neonize's event codes (neonize.events.EVENT_TO_INT) that we subscribe to: pair status (2),
# connected (3), keep-alive timeout/restored (4, 5), logged out (6), stream replaced (7),
# temporary ban (8), connect failure (9), client outdated (10), disconnected (12), message (17),
# receipt (18). 0 (our own device) is always sent. QR (1) is left out on purpose: neonize only
# delivers it after the QR loop has ended, i.e. stale; live codes come through the QR callback.
_SUBSCRIBED_EVENTS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 17, 18)
_DEVICE_EVENT = 0


class NeonizeEngineError(RuntimeError):
    """A request the neonize engine cannot carry out (not connected, bad number, send failed)."""


# --------------------------------------------------------------------------- Go plumbing


class _StartGate:
    """Serialises neonize's unlocked Go map writes (``Neonize()`` start-up and ``Stop``).

    ``Neonize()`` writes its maps during its first moments and then blocks for the life of the
    link, so the lock it takes is released by whichever comes first: its first callback, its
    return, or ``grace`` seconds (the writes happen right after opening the database).
    """

    lock = threading.Lock()

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._held = False
        self._guard = threading.Lock()
        self._timer: threading.Timer | None = None

    def enter(self, give_up: Callable[[], bool]) -> bool:
        """Wait for the lock; returns False (without it) as soon as ``give_up()`` is true.

        Polling lets an attempt that is closed while it queues leave the queue at once
        instead of reaching ``Neonize()`` after its session is gone.
        """
        while not self.lock.acquire(timeout=0.05):
            if give_up():
                return False
        if give_up():
            self.lock.release()
            return False
        with self._guard:
            self._held = True
            self._timer = threading.Timer(self._grace, self.release)
            self._timer.daemon = True
            self._timer.start()
        return True

    def release(self) -> None:
        with self._guard:
            if not self._held:
                return
            self._held = False
            if self._timer is not None:
                self._timer.cancel()
            self.lock.release()


def _go() -> Any:
    """The loaded goneonize library (lazy: see the module docstring)."""
    from neonize._binder import gocode

    return gocode


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking neonize call on a fresh daemon thread and await its result.

    Not ``asyncio.to_thread``: a Go call can outlive its caller (a dial waits up to 60 s), and
    default-executor threads are joined at interpreter exit and shared with the whole app.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def main() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=main, name="watui-neonize-call", daemon=True).start()
    return future


@dataclass(frozen=True, slots=True)
class _Options:
    connect_timeout: float
    start_grace: float
    log_level: str
    device_name: str
    proxy: str | None


class _Run:
    """One ``Neonize()`` call: one connection attempt with its own Go-side client id.

    Thread model: ``main`` runs on its own daemon thread and neonize calls the callbacks on it;
    ``emit`` hops each fact onto the loop. ``abandoned`` is only set on the loop thread, and
    ``_deliver`` re-checks it there, so nothing is reported once ``disconnect()`` returned.
    """

    def __init__(
        self,
        session: NeonizeSession,
        loop: asyncio.AbstractEventLoop,
        *,
        new_device: bool,
        options: _Options,
        jid: str | None = None,
    ) -> None:
        self.session_id = session.session_id
        self._report = session.report
        self.loop = loop
        self.options = options
        self.new_device = new_device
        self.uuid = f"watui-{session.session_id}-{uuidlib.uuid4().hex[:12]}".encode()
        self.db = session.database.encode()
        self.jid = jid  # cluster mode: the stored device to resume (None: see new_device)
        self.jid_bytes = _jid_proto(jid).SerializeToString() if jid else b""
        self._remember = session.remember_jid
        self.abandoned = False
        self.me: Device | None = None
        self.first_qr = asyncio.Event()
        self.started_at: float | None = None  # loop time the Go call began (after the gate)
        self.called = False  # Neonize() was (or is about to be) called: the attempt may dial
        self._watchdog: asyncio.TimerHandle | None = None
        # Phases, written by the run thread, read anywhere (the GIL keeps bools consistent).
        self.registered = False  # Go has the client in its maps (a callback arrived)
        self.in_loop = False  # neonize's event loop is up: Stop() is safe
        self.progressed = False  # a QR code or our device arrived: the watchdog stands down
        self.returned = threading.Event()  # Neonize() returned
        self.finished = threading.Event()  # the run thread is done, Go maps cleaned up
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._disconnected = False
        self._inflight = 0
        self._gate = _StartGate(options.start_grace)
        self._api: NewClient | None = None
        self._callbacks: tuple[Any, ...] = ()
        self._thread = threading.Thread(
            target=self._main, name=f"watui-neonize-{session.session_id}", daemon=True
        )

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        from neonize._binder import func_callback_bytes, func_callback_bytes2, func_string
        from neonize.client import NewClient
        from neonize.utils.log import log_whatsmeow

        # The API handle for PairPhone/send_message/logout on this run's Go client. Its GC
        # finaliser would call Stop(), which is only safe in some phases: we Stop ourselves.
        api = NewClient(self.db.decode(), uuid=self.uuid.decode(), new_device=self.new_device)
        api._stop_finalizer.detach()
        self._api = api
        # ctypes callbacks must outlive the Go call, so the run keeps them.
        self._callbacks = (
            func_string(self._on_qr),
            func_string(self._on_status),
            func_callback_bytes(self._on_event),
            func_callback_bytes2(log_whatsmeow),
        )
        self._thread.start()

    def _main(self) -> None:
        from neonize._binder import ProxySettings
        from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps

        gocode = _go()
        subscribed = bytearray(_SUBSCRIBED_EVENTS)
        subscribed_buf = (ctypes.c_char * len(subscribed)).from_buffer(subscribed)
        props = DeviceProps(os=self.options.device_name, platformType=DeviceProps.DESKTOP)
        props_bytes = props.SerializeToString()
        proxy = None
        if self.options.proxy:
            proxy = ProxySettings(proxy_address=self.options.proxy)._to_c_struct()
        qr_cb, status_cb, event_cb, log_cb = self._callbacks
        jid = self.jid_bytes
        try:
            if not self._begin():
                log.debug("neonize run %s closed before it started", self.uuid.decode())
                self.finished.set()
                return
            try:
                raw = gocode.Neonize(
                    self.db,
                    self.uuid,
                    jid,
                    len(jid),
                    int(self.new_device),
                    self.options.log_level.encode(),
                    qr_cb,
                    status_cb,
                    event_cb,
                    log_cb,
                    subscribed_buf,
                    len(subscribed),
                    props_bytes,
                    len(props_bytes),
                    b"",
                    0,
                    ctypes.byref(proxy) if proxy is not None else None,
                )
            finally:
                self._gate.release()
            err = (raw or b"").decode(errors="replace").strip()
        except Exception as exc:  # a ctypes/protobuf failure: report it like a dial error
            log.exception("neonize call failed for session %s", self.session_id)
            err = f"{type(exc).__name__}: {exc}"
        self.error = err or None
        self.returned.set()
        if err:
            self.emit(SessionError(message=err, code="connect_failed"))
        else:
            log.debug("neonize run %s ended", self.uuid.decode())
        self._stop()  # drop the Go client from neonize's maps (safe: the call returned)
        self.finished.set()

    def _begin(self) -> bool:
        """Take the start gate, then commit to calling ``Neonize()`` unless abandoned meanwhile.

        ``abandon`` takes the same lock, so a run closed before this point never dials, and
        one closed after it is reaped by its first callback. The watchdog starts here, at
        the real start of the attempt, not when it was queued.
        """
        if not self._gate.enter(lambda: self.abandoned):
            return False
        with self._lock:
            if self.abandoned:
                self._gate.release()
                return False
            self.called = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self._arm_watchdog)
        return True

    def _arm_watchdog(self) -> None:
        if self.abandoned:
            return
        self.started_at = self.loop.time()
        self._watchdog = self.loop.call_later(self.options.connect_timeout, self.watchdog)

    # ---------------------------------------------------------------- callbacks (run thread)

    def _on_qr(self, _uuid: int, data: int) -> None:
        try:
            code = ctypes.string_at(data).decode()
            self._gate.release()
            self.registered = self.progressed = True
            if self.abandoned:
                self._reap_soon()
                return
            self.emit(QrCodeIssued(code=code))
        except Exception:
            log.exception("neonize QR callback failed")

    def _on_status(self, _uuid: int, data: int) -> None:
        try:
            status = ctypes.string_at(data).decode()
            self._gate.release()
            self.registered = True
            log.info("session %s: login status %s", self.session_id, status)
            # "timeout": the QR loop is over and neonize now polls FetchMe for ever; Stop() is
            # still unsafe there (see the module docstring), so the run lingers until exit.
            event = map_login_status(status)
            if event is not None:
                self.emit(event)
        except Exception:
            log.exception("neonize login-status callback failed")

    def _on_event(self, _uuid: int, data: int, size: int, code: int) -> None:
        try:
            from neonize.events import INT_TO_EVENT

            self._gate.release()
            self.registered = True
            kind = INT_TO_EVENT.get(code)
            if kind is None:
                return
            message = kind.FromString(ctypes.string_at(data, size))
            if code == _DEVICE_EVENT:
                self.me = message  # type: ignore[assignment]
                self.in_loop = self.progressed = True
                if self.abandoned:
                    self._reap_soon()
                return
            event = map_event(message, self.me)
            if event is None:
                return
            if isinstance(event, PairSuccess) and self._remember is not None:
                # Cluster mode: whatsmeow committed the device; commit which one is ours
                # before anyone hears of the link (this thread waits; later events queue).
                try:
                    self._remember(event.jid, self.loop)
                except Exception as exc:
                    log.error("session %s: saving the linked device failed: %s", self.session_id, exc)
                    self.emit(SessionError(f"could not save the link: {exc}", code="auth_save_failed"))
                    self._reap_soon()
                    return
            self.emit(event)
            if ends_connection(event):
                # Stop here, so whatsmeow doesn't reconnect behind the manager's back.
                self._reap_soon()
        except Exception:
            log.exception("neonize event callback failed (code %s)", code)

    def emit(self, event: EngineEvent) -> None:
        if self.abandoned:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: EngineEvent) -> None:
        if self.abandoned:
            return
        if isinstance(event, QrCodeIssued):
            self.first_qr.set()
        try:
            self._report(event)
        except Exception:
            log.exception("report() failed for %r", event)

    # ---------------------------------------------------------------- watchdog (loop thread)

    def watchdog(self) -> None:
        """Fail an attempt that showed no sign of life (a black-holed network waits 60 s)."""
        if self.abandoned or self.progressed or self.returned.is_set():
            return
        waited = self.loop.time() - (self.started_at or self.loop.time())
        self._deliver(
            SessionError(
                message=f"no answer from WhatsApp within {waited:.0f} s (connect timeout)",
                code="connect_timeout",
            )
        )
        self.abandon()

    # ---------------------------------------------------------------- teardown

    def abandon(self) -> None:
        """Stop reporting and release the Go client as far as it is safe now (loop thread)."""
        self.close()
        self._reap_soon()

    def close(self) -> None:
        """Mark the run abandoned: no more reports, and no ``Neonize()`` call if not begun."""
        with self._lock:
            self.abandoned = True
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _reap_soon(self) -> None:
        threading.Thread(target=self.reap, name="watui-neonize-reap", daemon=True).start()

    def reap(self) -> None:
        """Do the safe teardown step for the current phase (any thread; idempotent).

        Returned or event loop up: ``Stop`` (frees the Go client; ends the call). In the
        connect/QR phase: only ``Disconnect``, since ``Stop`` there crashes neonize later; the
        call then lingers on its daemon thread until whatsmeow's QR codes run out.
        """
        if self.returned.is_set() or self.in_loop:
            self._stop()
        elif self.registered:
            self._disconnect()

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            busy = self._inflight > 0
        if busy:
            # A send/pair/logout is inside Go: cut its socket, and let it Stop when it returns.
            self._disconnect()
            return
        self._stop_now()

    def _stop_now(self) -> None:
        with _StartGate.lock:
            try:
                _go().Stop(self.uuid)
            except Exception:
                log.exception("neonize Stop failed")

    def _disconnect(self) -> None:
        with self._lock:
            if self._disconnected:
                return
            self._disconnected = True
        try:
            _go().Disconnect(self.uuid)
        except Exception:
            log.exception("neonize Disconnect failed")

    def wait_finished(self, timeout: float) -> bool:
        return self.finished.wait(timeout)

    # ---------------------------------------------------------------- API calls (any thread)

    def call(self, what: str, fn: Callable[[NewClient], T]) -> T:
        """Run ``fn`` against the Go client, refusing once it is (being) torn down.

        Neonize dereferences the client without a nil check, so calling a stopped one would
        crash the process; the in-flight count makes ``Stop`` wait for us instead.
        """
        with self._lock:
            if self._stopped or self._disconnected or self.abandoned or self._api is None:
                raise NeonizeEngineError(f"cannot {what}: the session is not connected")
            if not self.registered:
                raise NeonizeEngineError(f"cannot {what}: the connection is not up yet")
            self._inflight += 1
        try:
            return fn(self._api)
        finally:
            with self._lock:
                self._inflight -= 1
                stop_now = self._inflight == 0 and self._stopped
            if stop_now and (self.returned.is_set() or self.in_loop):
                self._stop_now()


# --------------------------------------------------------------------------- public classes


class NeonizeSession:
    """The engine side of one watui session: a series of ``_Run`` attempts on one auth db."""

    def __init__(
        self, engine: NeonizeEngine, session_id: str, report: Report, auth_path: Path
    ) -> None:
        self.engine = engine
        self.session_id = session_id
        self.report = report
        self.auth_path = auth_path
        self._run: _Run | None = None
        self._closed = False

    @property
    def options(self) -> _Options:
        return self.engine.options

    @property
    def database(self) -> str:
        """What ``Neonize()`` opens: the cluster's PostgreSQL URL, or this session's file."""
        return self.engine.database or quote(str(self.auth_path.resolve()), safe="/")

    @property
    def remember_jid(self) -> Callable[[str, asyncio.AbstractEventLoop], None] | None:
        """Cluster mode: how a run (on its Go thread) records the JID its phone linked."""
        auth_db = self.engine.auth_db
        if auth_db is None:
            return None
        session_id = self.session_id

        def remember(jid: str, loop: asyncio.AbstractEventLoop) -> None:
            save = auth_db.save(session_id, json.dumps({"jid": jid}))
            asyncio.run_coroutine_threadsafe(save, loop).result(timeout=30)

        return remember

    async def connect(self) -> None:
        """Start an attempt (resume if the db holds a device, else a new QR link) and return."""
        if self._closed:
            raise NeonizeEngineError("this engine session is closed")
        await self.disconnect()
        await _in_thread(_go)  # the first import loads the Go runtime: keep it off the loop
        loop = asyncio.get_running_loop()
        jid = None
        if self.engine.auth_db is not None:
            jid = await self.engine.linked_jid(self.session_id)
            new_device = jid is None
        else:
            self.auth_path.parent.mkdir(parents=True, exist_ok=True)
            new_device = not await self.engine.has_auth(self.session_id, self.auth_path)
        if self._closed:
            return
        run = _Run(self, loop, new_device=new_device, options=self.options, jid=jid)
        self._run = run
        run.start()  # the run arms its watchdog once it is past the start gate

    async def disconnect(self) -> None:
        """Drop the current attempt; returns within ~2 s whatever the Go side is doing."""
        run, self._run = self._run, None
        if run is None:
            return
        run.close()
        await _in_thread(run.reap)
        if run.returned.is_set() or run.in_loop:
            # Stop() cancels neonize's event loop, so the call returns promptly: wait for it,
            # so that a disconnect really leaves no thread behind.
            await _in_thread(lambda: run.wait_finished(2.0))

    async def logout(self) -> None:
        """Unlink from the phone when connected, then drop the link and delete the auth db."""
        run = self._run
        if run is not None and run.in_loop and not run.returned.is_set():
            try:
                await _in_thread(lambda: run.call("log out", lambda api: api.logout()))
            except Exception as exc:  # offline or already unlinked: still forget it locally
                log.warning("session %s: logout on WhatsApp failed: %s", self.session_id, exc)
        await self.disconnect()
        await self.engine.remove_auth(self.session_id, self.auth_path)

    async def pair_phone(self, phone_number: str) -> str:
        """Ask WhatsApp for an 8-character linking code (needs the QR phase to have begun)."""
        phone = _normalise_phone(phone_number)
        run = self._run
        if run is None:
            raise NeonizeEngineError("cannot request a pairing code: the session is not started")
        if not run.first_qr.is_set():
            # whatsmeow only accepts PairPhone once the server offered the first QR code.
            try:
                await asyncio.wait_for(run.first_qr.wait(), self.options.connect_timeout)
            except TimeoutError:
                raise NeonizeEngineError(
                    "cannot request a pairing code: WhatsApp did not start pairing"
                ) from None

        def pair(api: NewClient) -> str:
            from neonize.utils.enum import ClientName, ClientType

            return str(api.PairPhone(phone, True, ClientName.LINUX, ClientType.CHROME))

        try:
            return await _in_thread(lambda: run.call("request a pairing code", pair))
        except NeonizeEngineError:
            raise
        except Exception as exc:
            raise NeonizeEngineError(f"pairing code request failed: {exc}") from exc

    async def send_text(self, to: str, text: str) -> str:
        """Send ``text`` to the phone number ``to``; returns WhatsApp's message id."""
        phone = _normalise_phone(to)
        run = self._run
        if run is None or not run.in_loop or run.returned.is_set():
            raise NeonizeEngineError("cannot send: the session is not connected")

        def send(api: NewClient) -> str:
            from neonize.utils.jid import build_jid

            return str(api.send_message(build_jid(phone), outgoing_text(text)).ID)

        try:
            return await _in_thread(lambda: run.call("send", send))
        except NeonizeEngineError:
            raise
        except Exception as exc:
            raise NeonizeEngineError(f"sending to {phone} failed: {exc}") from exc

    async def close(self) -> None:
        """Drop the connection and refuse further use. Idempotent."""
        self._closed = True
        await self.disconnect()
        self.engine._forget(self)


def _normalise_phone(value: str) -> str:
    """Digits of an international number (``+49 170-1234567`` → ``491701234567``)."""
    digits = value.strip().removeprefix("+").replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise NeonizeEngineError(f"not a phone number in international format: {value!r}")
    return digits


class NeonizeEngine:
    """The real WhatsApp engine: one neonize client and auth database per session.

    ``connect_timeout``: seconds an attempt may go without a QR code or a resumed link before
    it fails with ``connect_timeout`` (whatsmeow itself waits 60 s on a silent network).
    ``start_grace``: upper bound on how long one attempt's start-up holds the process-wide
    start lock. ``log_level``: whatsmeow's level (DEBUG, INFO, WARN, ERROR), logged through
    the ``whatsmeow.*`` loggers. ``device_name``: shown on the phone under linked devices.
    ``proxy``: ``socks5://`` or ``http://`` proxy URL for the WhatsApp connection.
    ``database_url``: cluster mode, every session's auth state in that PostgreSQL database
    (see the module docstring) instead of a file per session.
    """

    name = "neonize"
    plays_phone = False

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        start_grace: float = 3.0,
        log_level: str = "WARN",
        device_name: str = "watui",
        proxy: str | None = None,
        database_url: str | None = None,
    ) -> None:
        self.auth_db = PgAuthStore(database_url, self.name) if database_url else None
        """Cluster mode: which device is each session's (``engine_auth``)."""
        self.database = whatsmeow_dsn(database_url) if database_url else None
        """Cluster mode: the whatsmeow store every session shares."""
        self.options = _Options(
            connect_timeout=connect_timeout,
            start_grace=start_grace,
            log_level=log_level.upper(),
            device_name=device_name,
            proxy=proxy,
        )
        self._sessions: weakref.WeakSet[NeonizeSession] = weakref.WeakSet()

    def session(self, session_id: str, report: Report, *, auth_path: Path) -> NeonizeSession:
        session = NeonizeSession(self, session_id, report, Path(auth_path))
        self._sessions.add(session)
        return session

    def _forget(self, session: NeonizeSession) -> None:
        self._sessions.discard(session)

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        """True if the session has a linked device: in its own db file (read-only; never
        creates it), or in cluster mode in PostgreSQL."""
        if self.auth_db is not None:
            return await self.linked_jid(session_id) is not None
        return self._file_has_device(Path(auth_path))

    def _file_has_device(self, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=2
            )
        except sqlite3.Error:
            return False
        try:
            row = conn.execute("SELECT 1 FROM whatsmeow_device LIMIT 1").fetchone()
        except sqlite3.Error:  # not (yet) a whatsmeow database
            return False
        finally:
            conn.close()
        return row is not None

    async def linked_jid(self, session_id: str) -> str | None:
        """Cluster mode: the JID of the session's device, if whatsmeow's store still has it."""
        assert self.auth_db is not None
        jid = _stored_jid(await self.auth_db.load(session_id))
        if jid is None:
            return None
        pool = await self.auth_db.pool()
        try:
            found = await pool.fetchval("SELECT 1 FROM whatsmeow_device WHERE jid = $1", jid)
        except asyncpg.UndefinedTableError:  # no neonize client ever opened this database
            return None
        return jid if found else None

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        """Delete the session's auth: its db and SQLite side files, or in cluster mode its
        whatsmeow device (the keys, sessions and contacts go with it: ``ON DELETE CASCADE``)."""
        if self.auth_db is not None:
            async with self.auth_db.transaction() as conn:
                jid = _stored_jid(await conn.fetchval(
                    "SELECT data FROM engine_auth WHERE session_id = $1 FOR UPDATE", session_id))
                if jid is not None:
                    with contextlib.suppress(asyncpg.UndefinedTableError):
                        async with conn.transaction():  # a savepoint: a missing table is no error
                            await conn.execute("DELETE FROM whatsmeow_device WHERE jid = $1", jid)
                await self.auth_db.delete(session_id, conn)
            return
        path = Path(auth_path)

        def remove() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)

        await _in_thread(remove)

    async def play_phone(self, session_id: str, action: PhoneAction) -> None:
        """A real phone is played by a person, not by watui."""
        raise EngineRefused("only the simulated engine can play the phone")

    def hosts(self) -> list[EngineHost]:
        """Inline: no host processes."""
        return []

    async def aclose(self) -> None:
        """Close whatever sessions are still open (the manager normally closed them all)."""
        for session in list(self._sessions):
            await session.close()
        if self.auth_db is not None:
            await self.auth_db.aclose()


def whatsmeow_dsn(database_url: str) -> str:
    """The URL for whatsmeow's lib/pq: ``sslmode=prefer`` unless the URL names one (lib/pq
    would require TLS, where libpq and asyncpg prefer it)."""
    query = dict(parse_qsl(urlsplit(database_url).query))
    if "sslmode" in query:
        return database_url
    return database_url + ("&" if "?" in database_url else "?") + "sslmode=prefer"


def _stored_jid(data: str | None) -> str | None:
    """The JID in an ``engine_auth`` record of this engine (``{"jid": …}``)."""
    if data is None:
        return None
    try:
        jid = json.loads(data).get("jid")
    except (ValueError, AttributeError):
        return None
    return jid if isinstance(jid, str) and jid else None


def _jid_proto(jid: str) -> JID:
    """Parse whatsmeow's ``user[.agent][:device]@server`` into neonize's JID message."""
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = jid.rpartition("@")
    device = 0
    if ":" in user:
        user, _, dev = user.partition(":")
        device = int(dev)
    agent = 0
    if "." in user:
        user, _, raw = user.partition(".")
        agent = int(raw)
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server, IsEmpty=False)
