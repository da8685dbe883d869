"""The compose box: a test message from a connected session, to one phone number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from watui.models import normalize_phone
from watui.widgets.footer import FittingFooter
from watui.widgets.status_badge import phone
from watui.widgets.text import clean

MAX_TEXT = 4096
"""What the service accepts in one message (``SendMessage.text``)."""


@dataclass(frozen=True, slots=True)
class Draft:
    """A message ready to send: ``to`` is the normalized number (digits, no plus)."""

    to: str
    text: str
    file: str | None = None
    """A file to attach (a path on this machine): the message goes as its type, ``text`` as
    its caption."""


class ComposeScreen(ModalScreen[Draft | None]):
    """Asks for a number and a text; dismisses with a :class:`Draft`, or ``None`` on escape.

    The number is checked here, as the service will check it, so a typo is fixed in place;
    sending (and what the engine says about it) is the app's job once the box is closed.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="compose.cancel", tooltip="Close without sending"),
        Binding("ctrl+s", "send", "Send", id="compose.send", tooltip="Send the message"),
    ]

    def __init__(self, session_name: str, from_number: str | None = None, to: str = "") -> None:
        super().__init__(classes="modal")
        self.session_name = session_name
        self.from_number = from_number
        self.to = to

    def compose(self) -> ComposeResult:
        source = f" ({phone(self.from_number)})" if self.from_number else ""
        with Vertical(id="compose-dialog", classes="dialog"):
            yield Static(Text(f"Message from {clean(self.session_name)!r}{source}"), classes="dialog-title")
            yield Static("Sends a real WhatsApp message from this session's number. "
                         "Enter sends; esc cancels.", classes="dialog-help")
            with Horizontal(classes="field"):
                yield Label("To", classes="field-label")
                yield Input(self.to, placeholder="+14155550123", id="compose-to", compact=True)
            with Horizontal(classes="field"):
                yield Label("Text", classes="field-label")
                yield Input(placeholder="Hello from watui", id="compose-text", max_length=MAX_TEXT, compact=True)
            with Horizontal(classes="field"):
                yield Label("File", classes="field-label")
                yield Input(placeholder="optional: a file to attach (text is its caption)", id="compose-file",
                            compact=True)
            yield Static("", id="compose-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Send (enter)", id="send", variant="primary")
        yield FittingFooter()

    def on_mount(self) -> None:
        tune = getattr(self.app, "tune_inputs", None)
        if tune is not None:
            tune(self)
        self.query_one("#compose-text" if self.to else "#compose-to", Input).focus()

    def _fail(self, message: str, field: str) -> None:
        self.query_one("#compose-error", Static).update(Text(message))
        self.query_one(field, Input).focus()

    def _number(self) -> str | None:
        try:
            return normalize_phone(self.query_one("#compose-to", Input).value)
        except ValueError as exc:
            self._fail(f"To: {exc}", "#compose-to")
            return None

    def action_send(self) -> None:
        number = self._number()
        if number is None:
            return
        text = self.query_one("#compose-text", Input).value
        file = self.query_one("#compose-file", Input).value.strip()
        if file:
            path = Path(file).expanduser()
            if not path.is_file():
                self._fail(f"File: no file at {file}", "#compose-file")
                return
            self.dismiss(Draft(number, text, str(path)))
            return
        if not text.strip():
            self._fail("Text: write something to send", "#compose-text")
            return
        self.dismiss(Draft(number, text))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "compose-to" and not self.query_one("#compose-text", Input).value.strip():
            # Enter after the number, with nothing written yet: on to the text.
            if self._number() is not None:
                self.query_one("#compose-error", Static).update("")
                self.query_one("#compose-text", Input).focus()
            return
        self.action_send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "send":
            self.action_send()
        else:
            self.dismiss(None)
