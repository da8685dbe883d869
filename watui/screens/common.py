"""Small helpers the screens share, and what screens may read of the console (``ConsoleHost``).

Screens never import the app: they read state, service and clock through :class:`ConsoleHost`
and ask for anything else by posting a message of :mod:`watui.console.requests`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, cast

from rich.text import Text
from textual.app import App
from textual.screen import Screen

from watui.models import RestoreProgress
from watui.service import SessionService
from watui.widgets.activity import Activity
from watui.widgets.state import ConsoleState
from watui.widgets.status_badge import phone
from watui.widgets.text import clean


class ConsoleHost(Protocol):
    """The parts of the console app a screen reads."""

    state: ConsoleState
    activity: Activity

    @property
    def service(self) -> SessionService: ...
    @property
    def codes_per_attempt(self) -> int: ...
    @property
    def restore_progress(self) -> RestoreProgress | None: ...
    def now(self) -> datetime: ...
    def tune_inputs(self, screen: Screen[Any]) -> None: ...
    def ensure_events(self, session_id: str) -> None: ...
    def ensure_messages(self, session_id: str) -> None: ...
    def refresh_deliveries(self, session_id: str) -> None: ...
    def refresh_stats(self, session_id: str) -> None: ...


def host(app: App[Any]) -> ConsoleHost:
    return cast(ConsoleHost, app)


class WatuiScreen(Screen[None]):
    """A screen of the watui console (typed access to state, service and clock)."""

    @property
    def wapp(self) -> ConsoleHost:
        return host(self.app)


class FollowerScreen(WatuiScreen):
    """A full screen about one session (QR, pairing code, details) that may close itself.

    A screen can only dismiss itself while it is on top; if a modal sits above it when the
    phone links, it closes as soon as it is shown again.
    """

    def __init__(self, session_id: str, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.session_id = session_id
        self._close_pending = False
        self._dismissed = False

    def close(self) -> None:
        """Dismiss now if on top, else as soon as it is; never twice."""
        if self._dismissed:
            return
        if self.is_current:
            self._dismissed = True
            self.dismiss()
        else:
            self._close_pending = True

    def on_screen_resume(self) -> None:
        if self._close_pending and not self._dismissed:
            self._close_pending = False
            self._dismissed = True
            self.dismiss()

    async def action_back(self) -> None:
        """``escape``: back out, once."""
        if not self._dismissed and self.is_current:
            self._dismissed = True
            self.dismiss()


def linked_notice(app: App[Any], session_id: str, payload: dict[str, Any]) -> None:
    """The success toast when a phone links."""
    state = getattr(app, "state", None)
    session = state.sessions.get(session_id) if state is not None else None
    name = clean(session.name) if session else session_id
    who = clean(str(payload.get("push_name") or ""))
    number = clean(phone(payload.get("phone_number"))) if payload.get("phone_number") else ""
    detail = " ".join(part for part in (number, f"({who})" if who else "") if part)
    app.notify(f"{name} is connected {detail}".rstrip(), title="Phone linked", severity="information",
               markup=False)


def user_text(text: str | None, style: str = "") -> Text:
    """User-supplied text for a Static: never markup (see :mod:`watui.widgets.text`)."""
    return Text(clean(text), style=style)
