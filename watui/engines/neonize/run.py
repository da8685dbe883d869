"""One connection attempt: one blocking ``Neonize()`` call, its callbacks, its safe teardown.

A :class:`_Run` is the runtime of a session while one attempt lives: the Go call on its own
thread, the events coming in from it (mapped by :mod:`.mapping` and reported on the loop),
the watchdog that fails a silent attempt, and the teardown step that is safe in each phase.
It also guards the calls made on its Go client (:meth:`_Run.call`, used by :mod:`.client`).

How neonize 0.5.2 behaves, and why a run is built the way it is:

* Everything goes through one blocking Go call, ``Neonize()``. It opens the auth database,
  connects, and then *never returns* while the link lives: it first loops over whatsmeow's
  QR channel (calling the QR callback for each code), then sits in an event loop calling the
  event callback. All of those callbacks arrive on the thread that made the call, never on
  the asyncio loop, so every fact hops over with ``loop.call_soon_threadsafe``.
* With no network ``Neonize()`` returns at once with whatsmeow's dial error; a network that
  swallows packets makes it wait for Go's own deadline (a minute through a proxy; our
  watchdog reports sooner, and cuts the dial). Neonize itself never retries.
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
  same moment would be a fatal "concurrent map writes". ``Neonize()`` writes its three maps
  in its first moments (after opening the auth database, before it dials), reads two of them
  once it is connected (right after the handshake when it resumes a device), and ``Stop``
  deletes from them. So a process-wide lock (:class:`.go._StartGate`) is held by an attempt
  from before its call until its dial reaches its relay, and again from the first bytes
  WhatsApp answers until its first callback (or its return); ``Stop`` takes it too. Starts in
  one process therefore overlap: each holds the lock for the milliseconds of its writes, not
  for its dial. That lock cannot cover the reads Go's own goroutines make later, which is why
  watui runs neonize in engine host processes by default (``WATUI_ENGINE_ISOLATION``): a crash
  costs one host, not watui.
* Every attempt dials through a proxy of its own in this process (:mod:`.relay`). Go gives no
  sign when it starts to dial and cannot call a dial off (``Disconnect`` waits for the dial to
  end; through a proxy that never answers that is a minute); the relay sees the dial begin,
  cuts it when the session is closed, and says in words why a dial failed.
* Received media is downloaded in the event callback itself (``download_any``, when the
  session keeps media: :meth:`_Run.download`), so a session's messages are reported in the
  order they came; whatsmeow queues the events behind it while its socket goes on reading. A
  failed download is reported on the message (``media.error``), never instead of it.
* Attempts queue on that lock. An attempt closed while it queues leaves the queue without
  ever calling ``Neonize()`` (so it never dials: no zombie connection that would later resume
  on the same auth database and replace the live one), and its ``connect_timeout`` watchdog
  only starts once the attempt is past the lock. One closed while it dials has its relay cut:
  the dial fails at once and the call returns.
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

Cluster mode, where that store is the cluster's PostgreSQL database, is told in
:mod:`.devices`; the start lock and the lazy import of neonize in :mod:`.go`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from watui.engines.base import (
    EngineEvent,
    IncomingMessage,
    PairSuccess,
    QrCodeIssued,
    Report,
    SessionError,
)
from watui.engines.neonize.go import _go, _StartGate
from watui.engines.neonize.mapping import (
    CANNOT_REACH,
    _jid_proto,
    connect_error,
    ends_connection,
    map_event,
    map_login_status,
)
from watui.engines.neonize.media import save_media, unwrap
from watui.engines.neonize.relay import _Relay, mask_proxy, route_for

if TYPE_CHECKING:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import Device, PairStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


# Neonize's event codes (neonize.events.EVENT_TO_INT) that we subscribe to: pair status (2),
# connected (3), keep-alive timeout/restored (4, 5), logged out (6), stream replaced (7),
# temporary ban (8), connect failure (9), client outdated (10), disconnected (12), message (17),
# receipt (18). 0 (our own device) is always sent. QR (1) is left out on purpose: neonize only
# delivers it after the QR loop has ended, i.e. stale; live codes come through the QR callback.
_SUBSCRIBED_EVENTS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 17, 18)
_DEVICE_EVENT = 0
_PAIR_STATUS_EVENT = 2


class NeonizeEngineError(RuntimeError):
    """A request the neonize engine cannot carry out (not connected, bad number, send failed)."""


@dataclass(frozen=True, slots=True)
class _Options:
    """The settings an attempt runs with: the engine's (see :class:`.NeonizeEngine`), with the
    session's own ``proxy`` and media settings over them (``SessionOptions``)."""

    connect_timeout: float
    start_grace: float
    log_level: str
    device_name: str
    proxy: str | None
    download_media: bool = False
    """Save received media's bytes under ``media_dir`` (both needed)."""
    media_dir: str | None = None


class _RunOwner(Protocol):
    """What a run needs of its session (:class:`.NeonizeSession`)."""

    @property
    def session_id(self) -> str: ...

    @property
    def report(self) -> Report: ...

    @property
    def database(self) -> str:
        """What ``Neonize()`` opens (see :mod:`.devices`)."""
        ...

    @property
    def remember_jid(self) -> Callable[[str, asyncio.AbstractEventLoop], None] | None:
        """Cluster mode: how the run records the JID its phone linked (else None)."""
        ...


class _Run:
    """One ``Neonize()`` call: one connection attempt with its own Go-side client id.

    Thread model: ``main`` runs on its own daemon thread and neonize calls the callbacks on it;
    ``emit`` hops each fact onto the loop. ``abandoned`` is only set on the loop thread, and
    ``_deliver`` re-checks it there, so nothing is reported once ``disconnect()`` returned.
    """

    def __init__(
        self,
        session: _RunOwner,
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
        self.paired: PairStatus | None = None  # this attempt's link (platform, business name)
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
        self.relay = _Relay(
            route_for(options.proxy), on_dial=self._gate.release, hold_answer=self._hold_for_answer
        )
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
        qr_cb, status_cb, event_cb, log_cb = self._callbacks
        jid = self.jid_bytes
        try:
            if self.abandoned:
                log.debug("neonize run %s closed before it started", self.uuid.decode())
                self.finished.set()
                return
            address = self.relay.open()  # Go dials through the attempt's relay (see .relay)
            if self.relay.route.proxy:
                log.info(
                    "session %s dials through the proxy %s",
                    self.session_id, mask_proxy(self.relay.route.proxy),
                )
            proxy = ProxySettings(proxy_address=address)._to_c_struct() if address else None
            if not self._begin():
                log.debug("neonize run %s closed before it started", self.uuid.decode())
                self.relay.cut()
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
        except Exception as exc:  # a ctypes/protobuf/relay failure: report it like a dial error
            log.exception("neonize call failed for session %s", self.session_id)
            err = f"{type(exc).__name__}: {exc}"
        self.error = err or None
        self.returned.set()
        self._gate.release()  # a hold taken for an answer that came just as the call returned
        self.relay.cut()  # its connections are over (a connected run returns once Stop-ped)
        if err:
            seen = self.relay.failure
            proxy = self.relay.route.where or None
            if seen is None:
                self.emit(connect_error(err, proxy=proxy))
            else:
                self.emit(connect_error(err, seen=seen.words, seen_raw=seen.raw, proxy=proxy))
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

    async def _hold_for_answer(self) -> None:
        """The first bytes WhatsApp sends back are about to reach Go (relay loop): take the
        start gate first, so the map reads neonize makes once connected never meet another
        attempt's writes. Held until the first callback, the return, or the grace."""
        while not self._gate.try_enter():
            if self.abandoned or self.returned.is_set():
                return
            await asyncio.sleep(0.005)
        if self.returned.is_set():  # nothing left to protect (see the end of _main)
            self._gate.release()

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
            if code == _PAIR_STATUS_EVENT:
                self.paired = message  # type: ignore[assignment]
            event = map_event(message, self.me, self.paired)
            if event is None:
                return
            if isinstance(event, IncomingMessage) and event.media is not None:
                # In the callback, so messages are reported in order (whatsmeow queues the
                # events behind it; the socket goes on reading).
                event = self.download(message, event)
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

    def download(self, message: Any, event: IncomingMessage) -> IncomingMessage:
        """``event`` with its media's bytes saved (``media.path``) when the session keeps
        media (run thread: a blocking Go call). A failed download is said on the message
        (``media.error``), which is reported all the same."""
        media = event.media
        if media is None or not self.options.download_media or not self.options.media_dir:
            return event
        if self.abandoned:  # nobody will hear of it: fetch nothing
            return event
        media_dir = self.options.media_dir
        inner = unwrap(message.Message)
        try:
            data = self.call("download media", lambda api: api.download_any(inner))
            if not isinstance(data, bytes | bytearray):
                raise NeonizeEngineError("the download returned no bytes")
            path = save_media(
                bytes(data), media_dir, message_id=event.message_id, mimetype=media.mimetype
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            log.warning(
                "session %s: downloading the %s of message %s failed: %s",
                self.session_id, event.type, event.message_id, reason,
            )
            return replace(event, media=replace(media, error=f"download failed: {reason}"))
        if self.abandoned:  # closed while it downloaded: the message will not be reported
            with contextlib.suppress(OSError):
                os.unlink(path)
            return event
        return replace(event, media=replace(media, path=path, size=len(data)))

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
                message=f"{CANNOT_REACH}: {self.relay.silence(waited)}",
                code="connect_timeout",
                details=f"no answer from WhatsApp within {waited:.0f} s (connect timeout)",
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

    def reap(self) -> bool:
        """Do the safe teardown step for the current phase (any thread; idempotent). Returns
        True if the call is now expected to return promptly.

        Returned or event loop up: ``Stop`` (frees the Go client; ends the call). Dialling (or
        not yet): cut the relay, so the dial fails and the call returns at once. In the QR
        phase: only ``Disconnect``, since ``Stop`` there crashes neonize later; the call then
        lingers on its daemon thread (see the module docstring), its relay closed.
        """
        if self.returned.is_set() or self.in_loop:
            self._stop()
            return True
        if self.registered:
            self._disconnect()
            self.relay.cut()
            return False
        self.relay.cut()
        return self.called and self.relay.active

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
