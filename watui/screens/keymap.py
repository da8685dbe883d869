"""Which bindings are active together, screen by screen: what a key remap must not make clash.

A key press goes to the focused widget, then its screen, then the app (a modal screen stops
before the app, except for the app's priority keys). So two bindings "of one screen" are the
screen's own, those of the widget that has the focus there, and the app's that reach it.
``console.toml`` remaps are checked against these scopes (:func:`watui.console.config.check_keys`)
before any is applied.
"""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, OptionList

from watui.console.config import KeyScope
from watui.screens.compose import ComposeScreen
from watui.screens.confirm import ConfirmScreen
from watui.screens.copy import CopyScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.hosts import HostsScreen
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.screens.quit import QuitScreen
from watui.widgets.log_view import LogView
from watui.widgets.sessions_table import SessionsTable

SCREENS: tuple[tuple[str, type[DOMNode], tuple[type[DOMNode], ...]], ...] = (
    ("the sessions table", MainScreen, (SessionsTable,)),
    ("the session details", DetailScreen, ()),
    ("the event and message log", LogScreen, (LogView,)),
    ("the QR screen", QrScreen, ()),
    ("the pairing code screen", PairCodeScreen, ()),
    ("the phone number prompt", PhonePrompt, (Input,)),
    ("the engine hosts", HostsScreen, (DataTable,)),
    ("the message box", ComposeScreen, (Input,)),
    ("the new session form", NewSessionScreen, (Input,)),
    ("the copy menu", CopyScreen, (OptionList,)),
    ("a confirmation", ConfirmScreen, (Button,)),
    ("the quit question", QuitScreen, (Button,)),
    ("the help screen", HelpScreen, ()),
)
"""Each screen, and the widget that holds the focus there (its keys come first)."""


def class_bindings(node: type[DOMNode]) -> list[Binding]:
    """A class's bindings with its bases', one entry per key, merged as Textual merges them
    (a subclass's binding for a key replaces its base's; textual is pinned)."""
    merged = node._merge_bindings()
    return [binding for bindings in merged.key_to_bindings.values() for binding in bindings]


def app_bindings(app: type[App[Any]]) -> list[Binding]:
    bindings = class_bindings(app)
    if app.ENABLE_COMMAND_PALETTE and not any(b.action.endswith("command_palette") for b in bindings):
        bindings.append(Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Command palette",
                                priority=True))
    return bindings


def key_scopes(app: type[App[Any]]) -> list[KeyScope]:
    """Every screen of the console with the bindings a key press may reach there."""
    everywhere = app_bindings(app)
    scopes = []
    for name, screen, focused in SCREENS:
        reach = [b for b in everywhere if b.priority] if issubclass(screen, ModalScreen) else everywhere
        bindings = [b for widget in focused for b in class_bindings(widget)]
        scopes.append(KeyScope(name, (*bindings, *class_bindings(screen), *reach)))
    return scopes
