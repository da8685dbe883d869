"""The help screen: every key of every screen, read from the bindings themselves, and the legend."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from watui.widgets.footer import FittingFooter
from watui.widgets.status_badge import LEGEND, PROXY_MARK, look_badge


def _bindings(source: Iterable[BindingType]) -> list[Binding]:
    return [b for b in source if isinstance(b, Binding)]


KEY_NAMES = {"slash": "/", "escape": "esc", "question_mark": "?", "enter": "enter", "asterisk": "*",
             "space": "space"}


def key_label(binding: Binding, keymap: dict[str, str] | None = None) -> str:
    keys = (keymap or {}).get(binding.id or "", binding.key)
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def keys_table(title: str, bindings: Iterable[Binding], keymap: dict[str, str] | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False,
                  box=None, padding=(0, 1), expand=False)
    table.add_column(style="bold reverse", no_wrap=True, min_width=8)
    table.add_column(no_wrap=True)
    table.add_column(style="dim", ratio=1)
    for binding in bindings:
        # The id under the name: what the [keys] table of console.toml remaps.
        name = Text(binding.description)
        if binding.id:
            name.append(f"\n{binding.id}", style="dim italic")
        table.add_row(f" {key_label(binding, keymap)} ", name, binding.tooltip)
    return table


def legend() -> Table:
    table = Table(title="Statuses", title_justify="left", title_style="bold", show_header=False,
                  box=None, padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column()
    for _key, look in LEGEND:
        table.add_row(look_badge(look), look.meaning)
    table.add_row(f" {PROXY_MARK.strip()} after a name", "the session connects through a proxy of its own")
    return table


class HelpScreen(ModalScreen[None]):
    """``?`` anywhere: what every key does, per screen, and what each status colour means."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, sections: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__(classes="modal")
        self.sections = sections

    @staticmethod
    def all_sections(app_bindings: Iterable[BindingType]) -> list[tuple[str, list[BindingType]]]:
        """Every screen's keys, read from the screens' own bindings."""
        from watui.screens.compose import ComposeScreen
        from watui.screens.details import DetailScreen
        from watui.screens.hosts import HostsScreen
        from watui.screens.log import LogScreen
        from watui.screens.main import MainScreen
        from watui.screens.pair_code import PairCodeScreen
        from watui.screens.qr import QrScreen
        from watui.widgets.sessions_table import SessionsTable

        return [
            ("Sessions table", [*MainScreen.BINDINGS]),
            ("Moving around and marking", [*SessionsTable.BINDINGS]),
            ("Session details", [*DetailScreen.BINDINGS]),
            ("Event and message log", [*LogScreen.BINDINGS]),
            ("QR screen", [*QrScreen.BINDINGS]),
            ("Pairing code screen", [*PairCodeScreen.BINDINGS]),
            ("Engine hosts", [*HostsScreen.BINDINGS]),
            ("Message box", [*ComposeScreen.BINDINGS,
                             Binding("enter", "send", "Send", tooltip="In the text field; in To, goes on to the text")]),
            ("Everywhere", [*app_bindings,
                            Binding("ctrl+p", "command_palette", "Command palette",
                                    tooltip="Find a session or an action by name; change the theme")]),
        ]

    def compose(self) -> ComposeResult:
        parts: list[RenderableType] = [Text("watui keys", style="bold")]
        keymap: dict[str, str] = dict(getattr(self.app, "_keymap", {}) or {})
        for title, bindings in self.sections:
            parts.append(Text(""))
            parts.append(keys_table(title, _bindings(bindings), keymap))
        parts.append(Text(""))
        parts.append(legend())
        parts.append(Text("\nEsc closes this and any other screen. Remap a key by its id (under its name) "
                          "in the [keys] table of the console config file (watui paths shows where).",
                          style="dim"))
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(Group(*parts), id="help-text")
        yield FittingFooter()
