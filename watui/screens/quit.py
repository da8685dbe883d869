"""``q`` while phones are connected: quit (they go offline), keep them running, or cancel.

Quitting the console closes its engine, which takes every linked phone offline. Keeping them
running hands the data dir to a ``watui serve`` in the background, where they reconnect; the
next ``watui`` offers to attach to it. The app decides what each choice does: this screen only
asks, and dismisses with the answer.
"""

from __future__ import annotations

from enum import StrEnum

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from watui.widgets.footer import FittingFooter


class QuitChoice(StrEnum):
    QUIT = "quit"
    """Quit: the engine closes, the phones go offline (they resume on the next start)."""
    KEEP_RUNNING = "keep-running"
    """Quit the console and hand the sessions to a background ``watui serve``."""
    CANCEL = "cancel"
    """Stay in the console."""


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class QuitScreen(ModalScreen[QuitChoice]):
    """The three-way question; escape cancels."""

    BINDINGS = [
        Binding("q", "choose('quit')", "Quit", id="quit.quit",
                tooltip="Quit; the connected phones go offline until the next start"),
        Binding("k", "choose('keep-running')", "Keep running", id="quit.keep",
                tooltip="Quit the console; a background watui serve keeps the sessions connected"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="quit.cancel", tooltip="Stay in watui"),
    ]

    DEFAULT_CSS = """
    QuitScreen #quit-buttons Button { min-width: 10; }
    """

    def __init__(self, connected: int, pending_actions: int = 0) -> None:
        super().__init__(classes="modal")
        self.connected = connected
        self.pending_actions = pending_actions

    def compose(self) -> ComposeResult:
        them = "it" if self.connected == 1 else "them"
        are = "is" if self.connected == 1 else "are"
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(Text("Quit watui?"), classes="dialog-title")
            yield Static(Text(f"{plural(self.connected, 'session', 'sessions')} {are} connected; "
                              f"quitting disconnects {them}."), id="quit-question")
            if self.pending_actions > 0:
                yield Static(Text(f"{plural(self.pending_actions, 'action is', 'actions are')} still running."),
                             id="quit-pending")
            yield Static(Text(f"Keep {them} running: a background server (watui serve) takes over this "
                              "data dir and the sessions stay connected there. Run watui again to "
                              "attach to it."), classes="dialog-help")
            with Horizontal(id="quit-buttons", classes="dialog-buttons"):
                yield Button("Quit (q)", id="quit", variant="error")
                yield Button("Keep running (k)", id="keep-running", variant="primary")
                yield Button("Cancel (esc)", id="cancel", variant="default")
        yield FittingFooter()

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(QuitChoice(event.button.id or QuitChoice.CANCEL))

    def action_choose(self, choice: str) -> None:
        self.dismiss(QuitChoice(choice))
