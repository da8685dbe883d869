"""What a running session does with the engine's facts and its timers.

QR codes and pairing codes (with their rounds and retries), the pairing result, connect,
disconnect, reconnect back-off, logout from the phone and engine errors. Each handler runs in
the session's task with its lock held (watui/manager/runtime.py) and changes the session only
through the journal; chat traffic is handed to watui/manager/messaging.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta
from typing import Any

from watui.clock import Clock
from watui.config import Settings
from watui.engines.base import (
    Engine,
    EngineEvent,
    IncomingMessage,
    LoggedOut,
    MessageReceipt,
    PairingWindowClosed,
    PairSuccess,
    QrCodeIssued,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)
from watui.errors import EngineFailure
from watui.machine import Status, Trigger
from watui.manager import messaging
from watui.manager.engine_options import effective_proxy
from watui.manager.journal import Journal, cleared_link_state
from watui.manager.registry import Registry
from watui.manager.runtime import ENGINE_CALL_TIMEOUT, Runtime, Supervisor, TimerKind
from watui.models import Connection, LinkMethod, PairCode, Session, isoformat, scrub_secret


class Lifecycle:
    def __init__(
        self, settings: Settings, engine: Engine, clock: Clock,
        registry: Registry, journal: Journal, supervisor: Supervisor,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.registry = registry
        self.journal = journal
        self.supervisor = supervisor
        self.rng = random.Random()

    # ================================================================ engine facts

    async def on_engine(self, runtime: Runtime, event: EngineEvent) -> None:
        session = self.registry.sessions[runtime.session_id]
        if not isinstance(event, IncomingMessage | MessageReceipt):
            self.supervisor.settled(runtime)  # the connect has an outcome: the restore may go on
        match event:
            case QrCodeIssued(code=code):
                # The code's text is the event; its PNG is drawn only when someone asks
                # (watui/qr_drawings.py's ``drawings``), so a code never waits for one.
                await self._on_qr(runtime, session, code)
            case PairSuccess(jid=jid, phone_number=phone, platform=platform):
                self.supervisor.disarm(runtime, TimerKind.QR)
                runtime.qr_text = None
                # A new link: what was known of a phone linked before does not carry over.
                connection = Connection(platform=platform) if platform else None
                await self.journal.apply(
                    session, Trigger.PAIR_SUCCESS,
                    changes={"jid": jid, "phone_number": phone, "connection": connection, **cleared_link_state()},
                )
            case SessionConnected():
                await self._on_connected(runtime, session, event)
            case SessionDisconnected(reason=reason):
                await self._on_disconnected(runtime, session, self._scrub(session, reason))
            case LoggedOut(reason=reason):
                await self.supervisor.teardown(runtime)
                await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
                await self.journal.apply(
                    session, Trigger.LOGGED_OUT, reason=reason or "logged_out",
                    changes={"linked": False, "jid": None, "autostart": False, "reconnect_attempts": 0,
                             "connection": None, **cleared_link_state()},
                )
            case SessionError(message=message, code=code, details=details):
                await self._on_error(runtime, session, self._scrub(session, message), code,
                                     self._scrub(session, details) if details else details)
            case PairingWindowClosed():
                await self._on_link_window_closed(runtime, session)
            case IncomingMessage():
                await messaging.on_message(self.journal, session, event)
            case MessageReceipt():
                await messaging.on_receipt(self.journal, session, event, runtime.early_receipts)

    async def _on_qr(self, runtime: Runtime, session: Session, code: str) -> None:
        if session.status not in (Status.INITIALIZING, Status.QR_READY) or session.pair_code:
            return
        if runtime.pair_phone is not None:
            # Link by phone number: the socket is up, ask for the code instead of showing QR.
            phone, runtime.pair_phone = runtime.pair_phone, None
            await self.issue_pair_code(runtime, session, phone)
            return
        runtime.qr_codes += 1
        ttl = self.settings.qr_first_ttl if runtime.qr_codes == 1 else self.settings.qr_next_ttl
        expires = self.clock.now() + timedelta(seconds=ttl)
        runtime.qr_text = code
        runtime.qr_expired = False
        await self.journal.apply(
            session, Trigger.QR_CODE,
            changes={"qr_generation": runtime.qr_codes, "qr_attempt": runtime.qr_attempt, "qr_expires_at": expires},
            extra={
                "qr_text": code, "generation": runtime.qr_codes, "attempt": runtime.qr_attempt,
                "codes_per_attempt": self.settings.qr_codes_per_attempt, "expires_at": isoformat(expires),
            },
        )
        self.supervisor.arm(runtime, TimerKind.QR, ttl)

    async def issue_pair_code(self, runtime: Runtime, session: Session, phone: str) -> None:
        """Ask the engine for a pairing code for ``phone`` and hand it to whoever waits for it."""
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
        self.supervisor.arm(runtime, TimerKind.QR, self.settings.pair_code_ttl)  # the code's life (whatsmeow: 160 s)
        session = await self.journal.apply(
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

    def _scrub(self, session: Session, text: str) -> str:
        """An engine's text with the session's proxy password masked: a dial error may quote
        the proxy's address, and this text goes to the event log, webhooks and the console."""
        return scrub_secret(text, effective_proxy(self.settings, session))

    async def _on_connected(self, runtime: Runtime, session: Session, event: SessionConnected) -> None:
        now = self.clock.now()
        reconnected = session.status is Status.DISCONNECTED
        known = session.connection or Connection()
        # What the engine did not say (""), it did not learn anew: keep what it said before.
        connection = Connection(
            platform=event.platform or known.platform, push_name=event.push_name or known.push_name,
            business_name=event.business_name or known.business_name, connected_at=now,
        )
        changes: dict[str, Any] = {
            "jid": event.jid, "phone_number": event.phone_number,
            "push_name": event.push_name or session.push_name, "connection": connection,
            "linked": True, "connected_at": now, "last_activity_at": now, "reconnect_attempts": 0,
            "qr_attempt": 0, **cleared_link_state(),
        }
        if reconnected:
            changes["reconnect_count"] = session.reconnect_count + 1
        await self.journal.apply(session, Trigger.CONNECTED, changes=changes)
        for kind in TimerKind:
            self.supervisor.disarm(runtime, kind)
        runtime.qr_text = None
        runtime.reconnect_attempts = 0

    async def _on_disconnected(self, runtime: Runtime, session: Session, reason: str) -> None:
        if session.status in (Status.CONNECTED, Status.CONNECTING):
            session = await self.journal.apply(session, Trigger.CONNECTION_LOST, reason=reason)
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
            self.schedule_reconnect(runtime, session)
        else:
            # No reconnect: the runtime ends here; ``start`` brings the session back.
            self.supervisor.finish_later(runtime)

    async def _on_error(
        self, runtime: Runtime, session: Session, message: str, code: str, details: str | None = None
    ) -> None:
        runtime.last_error = message
        if session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING):
            await self.supervisor.teardown(runtime)
            await self.journal.apply(
                session, Trigger.ENGINE_ERROR, reason=message,
                changes={"autostart": False, **cleared_link_state()},
                extra={"code": code, "message": message, **({"details": details} if details else {})},
            )
        elif session.status is Status.CONNECTED:
            session = await self.journal.apply(session, Trigger.CONNECTION_LOST, reason=message)
            self._after_connection_lost(runtime, session)
        elif session.status is Status.DISCONNECTED:
            await self._reconnect_failed(runtime, session, message)

    # ================================================================ timers

    async def on_timer(self, runtime: Runtime, kind: TimerKind) -> None:
        session = self.registry.sessions[runtime.session_id]
        if kind is TimerKind.QR:
            await self._on_qr_expired(runtime, session)
        elif kind is TimerKind.PAIRING:
            if session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING):
                reason = "connect_timeout" if session.linked else "pairing_timeout"
                await self.supervisor.teardown(runtime)
                await self.journal.apply(
                    session, Trigger.PAIRING_TIMEOUT, reason=reason,
                    changes={"autostart": False, **cleared_link_state()},
                    extra={"code": reason, "message": self._timeout_message(session)},
                )
        elif kind is TimerKind.RECONNECT:
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
        self.supervisor.disarm(runtime, TimerKind.QR)
        runtime.qr_text = None
        runtime.qr_expired = True
        phone = runtime.pair_code_phone if session.pair_code else None
        if runtime.qr_attempt <= self.settings.qr_max_retries:
            runtime.qr_attempt += 1
            runtime.qr_codes = 0
            if phone is not None:
                runtime.pair_phone = phone
                session = await self.journal.save(session, pair_code=None, pair_code_expires_at=None,
                                                  qr_attempt=runtime.qr_attempt)
            assert runtime.engine_session is not None
            await runtime.engine_session.disconnect()
            await self.engine_connect(runtime, session)
            return
        await self.supervisor.teardown(runtime)
        rounds = runtime.qr_attempt
        if phone is not None:
            code = "pair_code_timeout"
            message = f"the pairing code was not entered on the phone ({rounds} codes, each valid {int(self.settings.pair_code_ttl)} s)"
        else:
            code = "qr_timeout"
            message = f"no phone scanned the QR code ({rounds} rounds of {self.settings.qr_codes_per_attempt} codes)"
        await self.journal.apply(
            session, Trigger.QR_EXHAUSTED, reason=code,
            changes={"autostart": False, **cleared_link_state()},
            extra={"code": code, "message": message},
        )

    # ================================================================ connect and reconnect

    async def engine_connect(self, runtime: Runtime, session: Session) -> None:
        """Connect the engine session; a refusal fails the session (``engine_error``)."""
        assert runtime.engine_session is not None
        try:
            await asyncio.wait_for(runtime.engine_session.connect(), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            message = self._scrub(session, str(exc) or type(exc).__name__)
            runtime.last_error = message
            await self.supervisor.teardown(runtime)
            await self.journal.apply(
                self.registry.sessions[session.id], Trigger.ENGINE_ERROR, reason=message,
                changes={"autostart": False, **cleared_link_state()},
                extra={"code": "engine_error", "message": message},
            )

    def schedule_reconnect(self, runtime: Runtime, session: Session, delay: float | None = None) -> None:
        if delay is None:
            n = runtime.reconnect_attempts
            base = min(self.settings.reconnect_max_delay, self.settings.reconnect_base_delay * (2**n))
            # "Equal jitter": at least half the back-off, so attempts spread without bunching.
            delay = base / 2 + self.rng.uniform(0, base / 2)
        self.supervisor.arm(runtime, TimerKind.RECONNECT, delay)

    async def _reconnect_now(self, runtime: Runtime, session: Session) -> None:
        if session.status is not Status.DISCONNECTED:
            return
        runtime.reconnect_attempts += 1
        await self.journal.save(session, reconnect_attempts=runtime.reconnect_attempts)
        assert runtime.engine_session is not None
        with contextlib.suppress(Exception):
            await runtime.engine_session.disconnect()
        try:
            await asyncio.wait_for(runtime.engine_session.connect(), ENGINE_CALL_TIMEOUT)
        except Exception as exc:
            await self._reconnect_failed(
                runtime, self.registry.sessions[session.id], self._scrub(session, str(exc) or type(exc).__name__)
            )

    async def _reconnect_failed(self, runtime: Runtime, session: Session, reason: str) -> None:
        limit = session.settings.max_reconnect_attempts
        if runtime.reconnect_attempts >= limit:
            await self.supervisor.teardown(runtime)
            await self.journal.apply(
                session, Trigger.RECONNECT_EXHAUSTED, reason="reconnect_exhausted",
                changes={"autostart": False},
                extra={"code": "reconnect_exhausted",
                       "message": f"gave up after {runtime.reconnect_attempts} reconnect attempts: {reason}"},
            )
            return
        session = await self.journal.apply(
            session, Trigger.RECONNECT_FAILED, reason=reason,
            extra={"attempt": runtime.reconnect_attempts, "max_attempts": limit},
        )
        self.schedule_reconnect(runtime, session)
