"""The public commands: create, start, stop, restart, logout, delete, update, pairing code, QR,
send and simulate.

Each takes the session's lock (the same one its runtime's task takes), checks what the
caller may see, and writes before it does anything irreversible (closing an engine session,
deleting auth files), so a store that fails leaves the session as memory and disk both say.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Any

from watui.clock import Clock
from watui.config import Settings
from watui.engines.base import Engine, EngineRefused, EngineSession, PhoneAction
from watui.errors import (
    EngineFailure,
    InvalidTransition,
    NotFound,
    QrNotAvailable,
    SessionNotConnected,
    SessionNotFound,
    ValidationFailed,
)
from watui.machine import STARTABLE, EventType, Status, Trigger, transition
from watui.manager import media, messaging
from watui.manager.admission import Admission
from watui.manager.engine_options import effective_proxy
from watui.manager.journal import Journal, cleared_link_state
from watui.manager.lifecycle import Lifecycle
from watui.manager.pacing import Pacer, pending_message
from watui.manager.registry import Registry
from watui.manager.runtime import ENGINE_CALL_TIMEOUT, Supervisor, TimerKind
from watui.media.intake import Staged, stage
from watui.models import (
    Caller,
    LinkMethod,
    Message,
    MessageDirection,
    MessageStatus,
    MessageType,
    NewEvent,
    NewMessage,
    PairCode,
    QrCode,
    SendMessage,
    Session,
    SessionCreate,
    SessionSettings,
    SessionUpdate,
    SimulateRequest,
    mask_url,
    normalize_phone,
)
from watui.qr import data_url
from watui.qr_drawings import drawings

log = logging.getLogger(__name__)

PAIR_CODE_WAIT = 30.0


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Commands:
    def __init__(
        self, settings: Settings, engine: Engine, clock: Clock, registry: Registry,
        journal: Journal, supervisor: Supervisor, lifecycle: Lifecycle, admission: Admission, pacer: Pacer,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.registry = registry
        self.journal = journal
        self.supervisor = supervisor
        self.lifecycle = lifecycle
        self.admission = admission
        self.pacer = pacer

    # ================================================================ start, stop, logout (locked)

    async def start_locked(
        self, session: Session, caller: Caller | None, *, pair_phone: str | None = None,
        created: NewEvent | None = None,
    ) -> Session:
        """Start ``session`` (its lock held); ``caller`` None is the restore or a takeover (no
        limit, no admission check: watui/manager/admission.py)."""
        transition(session.status, Trigger.START)  # raises before anything is reserved
        self.registry.check_limit(session, caller)
        with self.admission.starting(session.id, check=caller is not None):
            await self.supervisor.placement.acquire(session, caller)
            stale = self.supervisor.runtimes.get(session.id)
            if stale is not None:  # e.g. a disconnected session waiting to reconnect
                await self.supervisor.teardown(stale)
            runtime = self.supervisor.spawn(session)
        runtime.pair_phone = pair_phone
        try:
            session = await self.journal.apply(
                session, Trigger.START,
                changes={
                    "autostart": True, "reconnect_attempts": 0, "qr_attempt": 1,
                    "link_method": LinkMethod.PHONE if pair_phone else session.link_method,
                    **cleared_link_state(),
                },
                before=[created] if created else None,
            )
        except Exception:
            await self.supervisor.teardown(runtime)  # not started after all: free the slot
            raise
        self.supervisor.arm(runtime, TimerKind.PAIRING, self.settings.pairing_timeout)
        await self.lifecycle.engine_connect(runtime, session)
        return self.registry.sessions.get(session.id, session)

    async def stop_locked(self, session: Session) -> Session:
        # Written first, torn down after (the lock keeps the runtime from acting in between):
        # a write that fails leaves the session running, as memory and disk both say.
        stopped = await self.journal.apply(
            session, Trigger.STOP, reason="stopped",
            changes={"autostart": False, "reconnect_attempts": 0, **cleared_link_state()},
        )
        runtime = self.supervisor.runtimes.get(session.id)
        if runtime is not None:
            await self.supervisor.teardown(runtime)
        return stopped

    async def _logout_locked(self, session: Session) -> Session:
        # Written first: if the write fails, nothing irreversible (the engine's logout, the
        # auth files) has happened yet.
        logged_out = await self.journal.apply(
            session, Trigger.LOGOUT, reason="logged_out",
            changes={"linked": False, "jid": None, "autostart": False, "reconnect_attempts": 0,
                     "connection": None, **cleared_link_state()},
        )
        runtime = self.supervisor.runtimes.get(session.id)
        if runtime is not None:
            if runtime.engine_session is not None and session.status is Status.CONNECTED:
                try:
                    await asyncio.wait_for(runtime.engine_session.logout(), ENGINE_CALL_TIMEOUT)
                except Exception:
                    log.warning("engine logout of %s failed; clearing local auth anyway", session.id, exc_info=True)
            await self.supervisor.teardown(runtime)
        await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
        return logged_out

    # ================================================================ commands

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
        registry = self.registry
        async with registry.lock(session.id):
            # Check and reserve synchronously (before any await), so concurrent creates cannot
            # all pass; a refused create has changed nothing.
            if spec.start:
                registry.check_limit(session, caller)
            registry.claim_name(session.owner, session.name, session.id)
            if spec.start:
                registry.take_slot(session.owner, session.id)
            registry.sessions[session.id] = session
            try:
                if spec.start:
                    # Created and started in one write: a failed write leaves no stopped phantom.
                    phone = spec.phone_number if spec.link_method is LinkMethod.PHONE else None
                    session = await self.start_locked(session, caller, pair_phone=phone, created=created)
                else:
                    await self.journal.write_created(session, created)
            except Exception:
                if registry.sessions.get(session.id) is session:
                    del registry.sessions[session.id]
                    registry.release_name(session)
                    registry.release_slot(session.owner, session.id)
                raise
        return session

    async def start(self, caller: Caller, session_id: str) -> Session:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            session = self.registry.visible(caller, session_id)
            return await self.start_locked(session, caller)

    async def stop(self, caller: Caller, session_id: str) -> Session:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            return await self.stop_locked(self.registry.visible(caller, session_id))

    async def restart(self, caller: Caller, session_id: str) -> Session:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            session = self.registry.visible(caller, session_id)
            # Checked before anything stops, and its place kept while it stops: a refused
            # restart leaves the session running, and no other start takes its slot meanwhile.
            with self.admission.starting(session_id):
                if session.status not in (Status.STOPPED, Status.FAILED):
                    session = await self.stop_locked(session)
                return await self.start_locked(session, caller)

    async def logout(self, caller: Caller, session_id: str) -> Session:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            return await self._logout_locked(self.registry.visible(caller, session_id))

    async def delete(self, caller: Caller, session_id: str) -> None:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            session = self.registry.visible(caller, session_id)
            # Written first (the session, its messages and their events go in one
            # transaction): a write that fails leaves the session as it was, still linked.
            await self.journal.apply(session, Trigger.DELETE, reason="deleted")
            self.registry.release_slot(session.owner, session.id)
            runtime = self.supervisor.runtimes.get(session.id)
            if runtime is not None:
                if session.linked and runtime.engine_session is not None and session.status is Status.CONNECTED:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(runtime.engine_session.logout(), ENGINE_CALL_TIMEOUT)
                await self.supervisor.teardown(runtime)
            await self.engine.remove_auth(session.id, self.settings.auth_path(session.id))
            await media.delete_session(self.journal.media, self.settings.data_dir, session.id)
        self.registry.forget_lock(session_id)

    async def update(self, caller: Caller, session_id: str, patch: SessionUpdate) -> Session:
        registry = self.registry
        registry.visible(caller, session_id)
        async with registry.lock(session_id):
            session = registry.visible(caller, session_id)
            changes: dict[str, Any] = {}
            if patch.name is not None and patch.name != session.name:
                registry.rename(session, patch.name)
                changes["name"] = patch.name
            if patch.description is not None:
                changes["description"] = patch.description
            if patch.settings is not None:
                given = patch.settings.model_dump(exclude_unset=True)
                # null clears a webhook field; for the flags it can only mean "no change".
                for flag in ("auto_reconnect", "max_reconnect_attempts", "message_history", "download_media"):
                    if given.get(flag, 0) is None:
                        del given[flag]
                current = session.settings.proxy
                if current and given.get("proxy") == mask_url(current):
                    given["proxy"] = current  # the masked value read back and sent again: unchanged
                merged = {**session.settings.model_dump(), **given}
                settings = SessionSettings.model_validate(merged)
                if settings.webhook_url is not None and settings.webhook_secret is None:
                    settings = settings.model_copy(update={"webhook_secret": new_webhook_secret()})
                changes["settings"] = settings
            if not changes:
                return session
            reconnect = (
                "settings" in changes and session_id in self.supervisor.runtimes
                and effective_proxy(self.settings, session)
                != effective_proxy(self.settings, session.model_copy(update={"settings": changes["settings"]}))
            )
            try:
                if not reconnect:
                    return await self.journal.save(session, **changes)
                # A new proxy for a session that is running (or waiting to reconnect): its
                # engine session dials through the old one, so restart it now, as
                # ``restart`` does (checked first: a refused restart changes nothing).
                with self.admission.starting(session_id):
                    saved = await self.journal.save(session, **changes)
                    return await self.start_locked(await self.stop_locked(saved), caller)
            except Exception:
                if "name" in changes and registry.sessions.get(session_id, session).name != changes["name"]:
                    registry.undo_rename(session, changes["name"])  # give the old name back
                raise

    # ================================================================ linking

    async def request_pair_code(self, caller: Caller, session_id: str, phone_number: str) -> PairCode:
        try:
            phone = normalize_phone(phone_number)
        except ValueError as exc:
            raise ValidationFailed(str(exc), details={"field": "phone_number"}) from None
        self.registry.visible(caller, session_id)
        waiter: asyncio.Future[PairCode] = asyncio.get_running_loop().create_future()
        async with self.registry.lock(session_id):
            session = self.registry.visible(caller, session_id)
            if session.status in (Status.CONNECTING, Status.CONNECTED) or (
                session.status is Status.DISCONNECTED and session.linked
            ):
                raise InvalidTransition(session.status.value, Trigger.PAIR_CODE.value)
            runtime = self.supervisor.runtimes.get(session_id)
            if session.status in STARTABLE or runtime is None:
                session = await self.start_locked(session, caller, pair_phone=phone)
                runtime = self.supervisor.runtimes.get(session_id)
                if runtime is None:
                    raise EngineFailure(f"the session could not start: {session.reason}")
                runtime.pair_waiters.append(waiter)
            elif session.status is Status.INITIALIZING:
                runtime.pair_phone = phone
                runtime.pair_waiters.append(waiter)
            else:  # qr_ready: the socket is up, ask now
                self.supervisor.placement.check(session_id)
                runtime.pair_waiters.append(waiter)
                await self.lifecycle.issue_pair_code(runtime, session, phone)
        try:
            return await asyncio.wait_for(waiter, PAIR_CODE_WAIT)
        except TimeoutError:
            raise EngineFailure("the engine issued no pairing code in time") from None

    async def get_qr(self, caller: Caller, session_id: str) -> QrCode:
        session = self.registry.visible(caller, session_id)
        runtime = self.supervisor.runtimes.get(session_id)
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
        code, expires_at = runtime.qr_text, session.qr_expires_at
        # Live right now, so no expiry is passed. Drawn off the event loop, once for everyone
        # asking for this code (SSE streams, webhooks, other pollers).
        png = await drawings.png(code, session_id=session.id)
        if png is None:
            raise QrNotAvailable("The QR code could not be drawn", details={"status": session.status.value})
        return QrCode(
            session_id=session.id, qr_text=code, qr_data=data_url(png),
            generation=session.qr_generation, codes_per_attempt=self.settings.qr_codes_per_attempt,
            attempt=session.qr_attempt, expires_at=expires_at,
        )

    # ================================================================ messages and the fake phone

    async def send_message(self, caller: Caller, session_id: str, to: str, text: str) -> Message:
        """Send a text message (:meth:`send` with ``type`` text)."""
        try:
            chat = normalize_phone(to)
        except ValueError as exc:
            raise ValidationFailed(str(exc), details={"field": "to"}) from None
        if not text.strip():
            raise ValidationFailed("text must not be blank", details={"field": "text"})
        return await self.send(caller, session_id, SendMessage.model_construct(
            to=chat, type=MessageType.TEXT, text=text, caption=None, media=None, location=None, contact=None))

    async def send(
        self, caller: Caller, session_id: str, request: SendMessage, *, upload: Path | None = None,
        upload_type: str | None = None,
    ) -> Message:
        """Send a message of any type. A file (``request.media``: base64, a URL, or a multipart
        ``upload`` already written to the staging directory, which this takes over) is checked
        (size cap, sniffed content) and staged before the engine sends it from its path; once
        sent it is kept in the media store and the message carries its descriptor."""
        chat = request.to
        try:
            await self._connected_engine(caller, session_id)
            paced = self.pacer.paces(self.registry.sessions[session_id])
            if paced:
                self.pacer.check_room(self.registry.sessions[session_id])
        except BaseException:
            await media.discard(upload)
            raise
        staged: Staged | None = None
        if request.media is not None:
            staged = await stage(self.settings, request.type.value, request.media, upload=upload,
                                 upload_type=upload_type)
        else:
            await media.discard(upload)
        try:
            if paced:
                return await self._queue(caller, session_id, chat, request, staged)
            return await self._send_staged(caller, session_id, chat, request, staged)
        finally:
            if staged is not None:
                await media.discard(staged.path)  # not kept (failed, history off) or moved already

    async def _queue(
        self, caller: Caller, session_id: str, chat: str, request: SendMessage, staged: Staged | None,
    ) -> Message:
        """A paced send (watui/manager/pacing.py): stored pending, its file kept until it goes."""
        text = (request.text if request.type is MessageType.TEXT else request.caption) or ""
        message = media.outgoing(request, staged)
        kept = None
        if staged is not None:
            kept = await media.keep(self.journal.media, session_id, staged.path)
            if kept is None:
                raise EngineFailure("Sending failed: the file could not be kept for its turn in the queue")
        info = media.media_info(kept, staged) if staged is not None else None
        details, extra = media.details_of(info, message.location, message.contact)
        try:
            await self._connected_engine(caller, session_id)  # still, now that the file is kept
            async with self.registry.lock(session_id):
                session = self.registry.visible(caller, session_id)
                self.pacer.check_room(session)
                payload = messaging.outgoing_payload(request.type, chat, text, None, MessageStatus.PENDING, extra)
                return await self.pacer.enqueue(
                    session, pending_message(session, chat, request.type, text, details, self.clock.now()), payload)
        except BaseException:
            if kept is not None and self.journal.media is not None:
                await self.journal.media.delete(session_id, kept)
            raise

    async def _connected_engine(self, caller: Caller, session_id: str) -> EngineSession:
        self.registry.visible(caller, session_id)
        async with self.registry.lock(session_id):
            session = self.registry.visible(caller, session_id)
            runtime = self.supervisor.runtimes.get(session_id)
            if session.status is not Status.CONNECTED or runtime is None or runtime.engine_session is None:
                raise SessionNotConnected(
                    f"Session {session.name!r} is {session.status.value}, not connected",
                    details={"status": session.status.value},
                )
            self.supervisor.placement.check(session_id)  # nothing leaves unless the lease holds
            return runtime.engine_session

    async def _send_staged(
        self, caller: Caller, session_id: str, chat: str, request: SendMessage, staged: Staged | None,
    ) -> Message:
        text = (request.text if request.type is MessageType.TEXT else request.caption) or ""
        engine_session = await self._connected_engine(caller, session_id)
        # Sending happens outside the lock so a slow send cannot hold up the session's events.
        message = media.outgoing(request, staged)
        message_id, error = await messaging.deliver(engine_session, chat, message)
        history = self.registry.sessions[session_id].settings.message_history \
            if session_id in self.registry.sessions else True
        info = None
        if staged is not None and history:  # a failed send's file is described, not kept
            kept = None if error else await media.keep(self.journal.media, session_id, staged.path)
            info = media.media_info(kept, staged)
        details, extra = media.details_of(info, message.location, message.contact) if history else (None, {})
        async with self.registry.lock(session_id):
            current = self.registry.sessions.get(session_id)
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
            payload = messaging.outgoing_payload(request.type, chat, text, message_id, status, extra)
            if error:
                payload["error"] = error
            result = await self.journal.write_snapshot(
                session, new,
                messages=[NewMessage(session_id, MessageDirection.OUT, chat,
                                     text if session.settings.message_history else "",
                                     message_id, status, error, now, request.type, details)],
                events=[NewEvent(type=EventType.MESSAGE, session_id=session_id, owner=session.owner,
                                 timestamp=now, payload=payload)],
            )
            runtime = self.supervisor.runtimes.get(session_id)
            early = runtime.early_receipts.pop(message_id, None) if runtime and message_id else None
            if early is not None:  # the receipt overtook this write
                result.messages[0] = await messaging.advance(self.journal, new, result.messages[0], early)
        if error:
            raise EngineFailure(f"Sending failed: {error}", details={"message": result.messages[0].model_dump(mode="json")})
        return result.messages[0]

    async def simulate(self, caller: Caller, session_id: str, request: SimulateRequest) -> Session:
        session = self.registry.visible(caller, session_id)
        if not self.engine.plays_phone:
            raise NotFound("simulate exists only with the simulated engine")
        runtime = self.supervisor.runtimes.get(session_id)
        if runtime is None or runtime.engine_session is None:
            raise InvalidTransition(session.status.value, f"simulate {request.action}")
        self.supervisor.placement.check(session_id)
        staged: Staged | None = None
        if request.media is not None:  # the phone's file, checked as a send's is
            staged = await stage(self.settings, request.type.value, request.media)
        try:
            outgoing = media.outgoing(SendMessage.model_construct(
                to=request.chat or "", type=request.type, text=request.text, caption=request.caption,
                media=request.media, location=request.location, contact=request.contact), staged)
            action = PhoneAction(
                request.action, reason=request.reason, chat=request.chat,
                text=request.text if request.type is MessageType.TEXT else request.caption,
                type=request.type.value, media=outgoing.media, location=outgoing.location,
                contact=outgoing.contact,
            )
            try:
                await self.engine.play_phone(session_id, action)
            except EngineRefused as exc:
                raise InvalidTransition(session.status.value, f"simulate {request.action}") from exc
        finally:
            if staged is not None:
                await media.discard(staged.path)  # the engine copied it, as a download would
        await self.supervisor.drain(session_id)
        return self.registry.sessions.get(session_id, session)
