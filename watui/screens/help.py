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

from watui.widgets.status_badge import STATUS_LOOKS, status_badge


def _bindings(source: Iterable[BindingType]) -> list[Binding]:
    return [b for b in source if isinstance(b, Binding)]


def key_label(binding: Binding) -> str:
    names = {"slash": "/", "escape": "esc", "question_mark": "?", "enter": "enter"}
    return ", ".join(names.get(k.strip(), k.strip()) for k in binding.key.split(","))


def keys_table(title: str, bindings: Iterable[Binding]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False,
                  box=None, padding=(0, 1), expand=False)
    table.add_column(style="bold reverse", no_wrap=True, min_width=8)
    table.add_column(no_wrap=True)
    table.add_column(style="dim")
    for binding in bindings:
        table.add_row(f" {key_label(binding)} ", binding.description, binding.tooltip)
    return table


def legend() -> Table:
    table = Table(title="Statuses", title_justify="left", title_style="bold", show_header=False,
                  box=None, padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column()
    for status, look in STATUS_LOOKS.items():
        table.add_row(status_badge(status), look.meaning)
    return table


class HelpScreen(ModalScreen[None]):
    """``?`` anywhere: what every key does, per screen, and what each status colour means."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, sections: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__(classes="modal")
        self.sections = sections

    def compose(self) -> ComposeResult:
        parts: list[RenderableType] = [Text("watui keys", style="bold")]
        for title, bindings in self.sections:
            parts.append(Text(""))
            parts.append(keys_table(title, _bindings(bindings)))
        parts.append(Text(""))
        parts.append(legend())
        parts.append(Text("\nEsc closes this and any other screen.", style="dim"))
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(Group(*parts), id="help-text")
