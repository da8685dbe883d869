"""Linking a phone from the console: the screens a new or unlinked session opens.

A session being linked shows its QR code (:class:`~watui.screens.qr.QrScreen`), or its pairing
code when it links by phone number (:class:`~watui.screens.pair_code.PairCodeScreen`); a
linked one opens its details. The app hands the screens' requests here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from watui.console.requests import CreateSession
from watui.machine import Status
from watui.models import LinkMethod
from watui.screens.details import DetailScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.widgets.text import clean

if TYPE_CHECKING:
    from watui.app import WatuiApp


class Linking:
    def __init__(self, app: WatuiApp) -> None:
        self.app = app
        self.numbers: dict[str, str] = {}
        """The phone number each session links by, as the user typed it."""

    async def create(self, message: CreateSession) -> None:
        """Create; a refusal goes back to the form, which stays open with what was typed."""
        spec, form = message.spec, message.form
        outcome, session = await self.app.actions.attempt(self.app.service.create_session(spec))
        if not outcome.ok or session is None:
            form.refused(outcome.reason)
            return
        form.created()
        self.app.state.put(session)
        self.app.feed.touch(session.id)
        self.app.notify(f"Created {clean(session.name)!r}; starting it", timeout=3, markup=False)
        if spec.link_method == LinkMethod.PHONE:
            if spec.phone_number:
                self.numbers[session.id] = spec.phone_number
            await self.app.push_screen(PairCodeScreen(
                session.id, session.pair_code, session.pair_code_expires_at, phone_number=spec.phone_number
            ))
        elif session.status != Status.CONNECTED:
            await self.app.push_screen(QrScreen(session.id))

    def open_session(self, session_id: str) -> None:
        """``enter``: the QR code (or pairing code) while linking, the details otherwise."""
        session = self.app.state.sessions.get(session_id)
        if session is None:
            return
        linking = session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING) and not session.linked
        if linking and (session.pair_code or session.link_method == LinkMethod.PHONE):
            self.app.push_screen(PairCodeScreen(
                session_id, session.pair_code, session.pair_code_expires_at, phone_number=self.numbers.get(session_id)
            ))
        elif linking:
            self.app.push_screen(QrScreen(session_id))
        else:
            self.app.push_screen(DetailScreen(session_id))

    def open_pair_code(self, session_id: str, code: str | None, expires_at: datetime | None) -> None:
        """Show the pairing code screen once; it replaces that session's QR screen if on top."""
        for screen in self.app.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                if code and not screen.code:
                    screen.code, screen.expires_at = code, expires_at
                    screen.refresh_code()
                return
        pair = PairCodeScreen(session_id, code, expires_at, phone_number=self.numbers.get(session_id))
        top = self.app.screen
        if isinstance(top, QrScreen) and top.session_id == session_id:
            top._dismissed = True
            self.app.switch_screen(pair)
        else:
            self.app.push_screen(pair)

    def link_by_phone(self, session_id: str) -> None:
        session = self.app.state.sessions.get(session_id)
        name = session.name if session else session_id

        def answered(number: str | None) -> None:
            if number:
                self.numbers[session_id] = number
                self.app.run_worker(self._request_pair_code(session_id, number), group="actions",
                                    exit_on_error=False)

        self.app.push_screen(PhonePrompt(name), answered)

    async def _request_pair_code(self, session_id: str, number: str) -> None:
        self.open_pair_code(session_id, None, None)
        session = self.app.state.sessions.get(session_id)
        name = clean(session.name) if session else session_id
        code = await self.app.actions.call(
            f"Pairing code for {name!r}", self.app.service.request_pair_code(session_id, number)
        )
        for screen in self.app.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                if code is None:
                    screen.close()
                else:
                    screen.code, screen.expires_at = code.code, code.expires_at
                    screen.refresh_code()
