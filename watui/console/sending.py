"""Sending a message from the console: the compose box, the send, and the toast that says
how it went (the message itself shows in the session's log through its ``message`` event)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watui.errors import EngineFailure, ValidationFailed, WatuiError
from watui.machine import Status
from watui.media.sniff import HEAD_BYTES, kind_for
from watui.models import Message, MessageStatus, SendMessage
from watui.screens.compose import ComposeScreen, Draft
from watui.widgets.status_badge import phone, session_look
from watui.widgets.text import clean

if TYPE_CHECKING:
    from watui.app import WatuiApp

log = logging.getLogger(__name__)


class Sending:
    def __init__(self, app: WatuiApp) -> None:
        self.app = app
        self.last_recipient = ""
        """Offered again in the next compose box."""

    def compose_message(self, session_id: str) -> None:
        """``m``: the compose box for a connected session; any other status is told, not opened."""
        session = self.app.state.sessions.get(session_id)
        if session is None:
            return
        if session.status != Status.CONNECTED:
            self.app.notify(
                f"{clean(session.name)!r} is {session_look(session).label}, not connected: only a connected "
                "session can send messages.",
                title="Cannot send", severity="warning", timeout=5, markup=False,
            )
            return

        def composed(draft: Draft | None) -> None:
            if draft is not None:
                self.last_recipient = phone(draft.to)
                self.app.run_worker(self._send(session_id, draft), group="actions", exit_on_error=False)

        self.app.push_screen(ComposeScreen(session.name, session.phone_number, self.last_recipient), composed)

    async def _send(self, session_id: str, draft: Draft) -> None:
        """Send; the ``message`` event (sent or failed) puts it in the log, the toast says how it went."""
        session = self.app.state.sessions.get(session_id)
        name = clean(session.name) if session else session_id
        self.app.actions.pending += 1
        try:
            if draft.file:
                message = await self._send_file(session_id, draft)
            else:
                message = await self.app.service.send_message(session_id, draft.to, draft.text)
        except EngineFailure as exc:
            # The manager stored the failed message too: it shows in the log with this reason.
            self.app.notify(exc.message, title=f"Message to {phone(draft.to)} failed", severity="error",
                            timeout=8, markup=False)
        except WatuiError as exc:
            self.app.notify(exc.message, title="Message not sent", severity="error", timeout=8, markup=False)
        except Exception as exc:  # an engine bug must not take the console down
            log.exception("sending from %s failed", session_id)
            self.app.notify(f"{type(exc).__name__}: {exc}", title="Message not sent", severity="error",
                            timeout=8, markup=False)
        else:
            if message.status is MessageStatus.PENDING:  # pacing: it waits its turn
                rate = session.settings.send_rate if session else None
                pace = f" ({rate} a minute)" if rate else ""
                self.app.notify(f"From {name!r} to {clean(phone(message.chat))}: it goes in its turn{pace}",
                                title="Message queued", timeout=4, markup=False)
            else:
                self.app.notify(f"From {name!r} to {clean(phone(message.chat))}", title="Message sent",
                                timeout=3, markup=False)
        finally:
            self.app.actions.pending -= 1

    async def _send_file(self, session_id: str, draft: Draft) -> Message:
        """Send ``draft.file`` as the type its content is (a copy: the service takes the file
        it is given over), with ``draft.text`` as the caption where the type has one."""
        assert draft.file is not None
        source = Path(draft.file)
        fd, name = tempfile.mkstemp(prefix="watui-attach-")
        os.close(fd)
        copy = Path(name)
        try:
            head = await asyncio.to_thread(_copy_and_read_head, source, copy)
        except OSError as exc:
            await asyncio.to_thread(copy.unlink, True)
            raise ValidationFailed(f"cannot read {source}: {exc.strerror or exc}") from None
        kind = kind_for(head)
        body: dict[str, Any] = {"to": draft.to, "type": kind, "media": {"filename": source.name}}
        if draft.text.strip() and kind in ("image", "video", "document"):
            body["caption"] = draft.text
        request = SendMessage.model_validate(body, context={"upload": True})
        return await self.app.service.send(session_id, request, upload=copy)


def _copy_and_read_head(source: Path, target: Path) -> bytes:
    shutil.copyfile(source, target)
    with target.open("rb") as f:
        return f.read(HEAD_BYTES)
