"""``y``: copy the session's id, phone number or JID to the clipboard.

Copying goes through the terminal (OSC 52, Textual's ``copy_to_clipboard``), so it works over
SSH too. The menu offers only what the session has: a session never linked has no number yet.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from watui.models import Session
from watui.widgets.footer import FittingFooter
from watui.widgets.status_badge import phone
from watui.widgets.text import clean

Choice = tuple[str, str]
"""What was chosen ("phone number") and the text to copy."""


def choices(session: Session) -> list[tuple[str, str, str]]:
    """(key, what, text) for each thing the session has."""
    out = [("i", "session id", session.id)]
    if session.phone_number:
        out.append(("p", "phone number", phone(session.phone_number)))
    if session.jid:
        out.append(("j", "JID", session.jid))
    return out


class CopyScreen(ModalScreen[Choice | None]):
    """A small menu; dismisses with what to copy, or ``None``."""

    BINDINGS = [
        Binding("i", "pick('i')", "Id", id="copy.id", tooltip="Copy the session id"),
        Binding("p", "pick('p')", "Phone", id="copy.phone", tooltip="Copy the phone number"),
        Binding("j", "pick('j')", "JID", id="copy.jid", tooltip="Copy the WhatsApp JID"),
        Binding("escape", "cancel", "Cancel", id="copy.cancel", tooltip="Copy nothing"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__(classes="modal")
        self.session = session
        self.items = choices(session)

    def compose(self) -> ComposeResult:
        with Vertical(id="copy-dialog", classes="dialog"):
            yield Static(Text(f"Copy from {clean(self.session.name)!r}"), classes="dialog-title")
            options = []
            for key, what, text in self.items:
                prompt = Text.assemble((f" {key} ", "bold reverse"), f" {what:<13}", (clean(text), "bold"))
                options.append(Option(prompt, id=key))
            yield OptionList(*options, id="copy-options")
            if len(self.items) < 3:
                yield Static("Phone number and JID are known once a phone is linked.", classes="dialog-help")
        yield FittingFooter()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pick":
            return any(key == parameters[0] for key, _, _ in self.items) or None
        return True

    def action_pick(self, key: str) -> None:
        for item_key, what, text in self.items:
            if item_key == key:
                self.dismiss((what, text))
                return

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.action_pick(event.option.id)
