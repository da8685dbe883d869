"""A yes/no question before anything destructive (logout, delete, stop all)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from watui.widgets.footer import FittingFooter


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with ``True`` only on an explicit yes; escape and ``n`` answer no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Do it"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Back out, change nothing"),
    ]

    def __init__(self, title: str, question: str, yes_label: str = "Yes", *, danger: bool = True) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.question = question
        self.yes_label = yes_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            # Text, not markup: questions quote session names, which are user text.
            yield Static(Text(self.title_text), classes="dialog-title")
            yield Static(Text(self.question), id="confirm-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button("No (n)", id="no", variant="default")
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error" if self.danger else "primary")
        yield FittingFooter()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
