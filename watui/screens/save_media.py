"""Saving a media message's file from the messages log: which message, and where to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from watui.widgets.footer import FittingFooter


@dataclass(frozen=True, slots=True)
class SaveRequest:
    message: str
    """watui's id of the message, or WhatsApp's."""
    path: Path


class SaveMediaScreen(ModalScreen[SaveRequest | None]):
    """Asks for a message (the newest one with a file, offered) and a path to save its file to."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="save.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "save", "Save", id="save.save", tooltip="Save the file"),
    ]

    def __init__(self, message: str = "", path: str = "") -> None:
        super().__init__(classes="modal")
        self.message = message
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="save-dialog", classes="dialog"):
            yield Static(Text("Save a message's file"), classes="dialog-title")
            yield Static("The message's id (watui's or WhatsApp's) and a path to write its file to. "
                         "Enter saves; esc cancels.", classes="dialog-help")
            with Horizontal(classes="field"):
                yield Label("Message", classes="field-label")
                yield Input(self.message, placeholder="3A0F… or 42", id="save-message", compact=True)
            with Horizontal(classes="field"):
                yield Label("Save to", classes="field-label")
                yield Input(self.path, placeholder="~/Downloads/photo.jpg", id="save-path", compact=True)
            yield Static("", id="save-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save (enter)", id="save", variant="primary")
        yield FittingFooter()

    def on_mount(self) -> None:
        tune = getattr(self.app, "tune_inputs", None)
        if tune is not None:
            tune(self)
        self.query_one("#save-path" if self.message else "#save-message", Input).focus()

    def _fail(self, message: str, field: str) -> None:
        self.query_one("#save-error", Static).update(Text(message))
        self.query_one(field, Input).focus()

    def action_save(self) -> None:
        message = self.query_one("#save-message", Input).value.strip()
        if not message:
            self._fail("Message: which message's file?", "#save-message")
            return
        raw = self.query_one("#save-path", Input).value.strip()
        if not raw:
            self._fail("Save to: a path to write the file to", "#save-path")
            return
        path = Path(raw).expanduser()
        if path.is_dir():
            self._fail(f"Save to: {raw} is a directory; give a file name", "#save-path")
            return
        if not path.parent.is_dir():
            self._fail(f"Save to: no directory {path.parent}", "#save-path")
            return
        self.dismiss(SaveRequest(message, path))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)
