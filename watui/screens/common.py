"""Small helpers the screens share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.app import App
from textual.screen import Screen

from watui.widgets.status_badge import phone

if TYPE_CHECKING:
    from watui.app import WatuiApp


class WatuiScreen(Screen[None]):
    """A screen that knows its app is the watui console (typed access to state and service)."""

    @property
    def wapp(self) -> WatuiApp:
        return cast("WatuiApp", self.app)


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
    name = session.name if session else session_id
    who = payload.get("push_name") or ""
    number = phone(payload.get("phone_number")) if payload.get("phone_number") else ""
    detail = " ".join(part for part in (number, f"({who})" if who else "") if part)
    app.notify(f"{name} is connected {detail}".rstrip(), title="Phone linked", severity="information")
