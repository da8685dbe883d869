"""Linking by phone number: ask for the number, then show the 8-character code and the steps."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from watui.console import requests as ask
from watui.machine import EventType, Status
from watui.models import normalize_phone
from watui.screens.common import FollowerScreen, linked_notice
from watui.widgets.footer import FittingFooter
from watui.widgets.messages import SessionEvent, StateChanged
from watui.widgets.status_badge import phone, session_badge, until
from watui.widgets.text import clean, one_line


class PhonePrompt(ModalScreen[str | None]):
    """Asks for the phone number to link; dismisses with digits (no plus) or ``None``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="phone.cancel", tooltip="Back out")]

    def __init__(self, session_name: str) -> None:
        super().__init__(classes="modal")
        self.session_name = session_name

    def compose(self) -> ComposeResult:
        with Vertical(id="phone-dialog", classes="dialog"):
            yield Static(Text(f"Link {clean(self.session_name)!r} by phone number"), classes="dialog-title")
            yield Static("The phone's number in international format. WhatsApp sends that phone a "
                         "notification; you type the code shown next.", classes="dialog-help")
            yield Input(placeholder="+14155550123", id="phone-number")
            yield Static("", id="phone-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Get code", id="ok", variant="primary")
        yield FittingFooter()

    def on_mount(self) -> None:
        tune = getattr(self.app, "tune_inputs", None)
        if tune is not None:
            tune(self)
        self.query_one(Input).focus()

    def _submit(self) -> None:
        raw = self.query_one(Input).value
        try:
            number = normalize_phone(raw)
        except ValueError as exc:
            self.query_one("#phone-error", Static).update(str(exc))
            return
        self.dismiss(number)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def spaced_code(code: str) -> str:
    """``ABCD-EFGH`` as ``A B C D - E F G H``: easier to read off a screen and type."""
    plain = code.replace("-", "")
    if len(plain) == 8:
        return " ".join(plain[:4]) + "  -  " + " ".join(plain[4:])
    return " ".join(code)


STEPS = (
    "Open WhatsApp on the phone.",
    "Settings (iPhone) or ⋮ menu (Android) → Linked devices → Link a device.",
    "Tap “Link with phone number instead”.",
    "Type the code above. It is valid once, for a few minutes.",
)


class PairCodeScreen(FollowerScreen):
    """The pairing code for one session; closes itself when the phone links."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="pair.back", tooltip="Back to the sessions (linking goes on)"),
        Binding("c", "demo_enter", "DEMO: enter code", id="pair.demo_enter",
                tooltip="Demo only: play the phone typing this code"),
    ]

    def __init__(self, session_id: str, code: str | None = None, expires_at: datetime | None = None,
                 *, phone_number: str | None = None) -> None:
        super().__init__(session_id, classes="link-screen")
        self.phone_number = phone_number
        """The number the code is for (digits), when this console asked for it."""
        self.code = code
        self.expires_at = expires_at
        self.failure: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="pair-body"):
            yield Static("", id="pair-title", classes="link-title")
            with Center():
                yield Static("", id="pair-code")
            yield Static("", id="pair-expiry", classes="link-status")
            yield Static("", id="pair-steps")
        yield FittingFooter()

    def on_mount(self) -> None:
        session = self.wapp.state.sessions.get(self.session_id)
        if session is not None and self.code is None and session.pair_code:
            self.code, self.expires_at = session.pair_code, session.pair_code_expires_at
        self._draw()
        self.set_interval(1.0, self.refresh_times, name="pair-countdown")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_enter":
            return bool(self.wapp.service.simulated) and self.code is not None
        return True

    def action_demo_enter(self) -> None:
        self.post_message(ask.Simulate(self.session_id, "scan"))

    def refresh_times(self) -> None:
        """The countdown to the code's expiry."""
        self._draw()

    def refresh_code(self) -> None:
        """Redraw after ``code``/``expires_at`` were set from outside (a pairing code request)."""
        self._draw()
        self.refresh_bindings()

    def _draw(self) -> None:
        app = self.wapp
        session = app.state.sessions.get(self.session_id)
        name = session.name if session else self.session_id
        title = Text.assemble(("Link by phone number  ", "bold"), (clean(name), "bold"))
        if session is not None:
            title.append("  ")
            title.append_text(session_badge(session, width=None))
        self.query_one("#pair-title", Static).update(title)
        code_widget = self.query_one("#pair-code", Static)
        if self.failure:
            code_widget.update(Text(f"Pairing failed: {one_line(self.failure)}", style="bold red"))
        elif self.code:
            code_widget.update(Text(spaced_code(self.code), style="bold"))
        else:
            code_widget.update(Text("Requesting a code…", style="dim"))
        expiry = Text()
        if self.phone_number:
            expiry.append(f"For the phone {phone(self.phone_number)}", style="bold")
        if self.code and not self.failure:
            expiry.append(f"{'  ·  ' if expiry else ''}Code expires {until(self.expires_at, app.now())}")
        if session is not None and session.status == Status.CONNECTING:
            expiry = Text("Code accepted, linking…")
        self.query_one("#pair-expiry", Static).update(expiry)
        steps = Text()
        for number, step in enumerate(STEPS, 1):
            steps.append(f" {number}. ", style="bold")
            steps.append(step + "\n")
        self.query_one("#pair-steps", Static).update(steps)

    def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        if event.session_id != self.session_id:
            return
        if event.type == EventType.PAIR_CODE:
            self.code = event.payload.get("code")
            expires = event.payload.get("expires_at")
            self.expires_at = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
            self.failure = None
            self.refresh_bindings()
        elif event.type == EventType.ERROR:
            self.failure = str(event.payload.get("message") or event.payload.get("code"))
        elif event.type == EventType.CONNECTED:
            linked_notice(self.app, self.session_id, event.payload)
            self.close()
            return
        self._draw()

    def on_state_changed(self, message: StateChanged) -> None:
        if self.session_id in message.removed:
            self.close()
        elif message.everything or self.session_id in message.changed:
            self._draw()
