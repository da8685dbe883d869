"""One line for attach mode: which server the console drives, and whether the link is up.

It follows the app's ``server_link`` reactive (a :class:`watui.remote.LinkStatus`, ``None``
when the console runs its own engine, and then the line is hidden). The reason a link is
down is the server's or the network's text: shown as plain text, never as markup, and
without control characters.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from watui.remote.link import LinkState, LinkStatus

LOOKS = {
    LinkState.CONNECTING: ("◌ connecting", "bold yellow"),
    LinkState.CONNECTED: ("● connected", "bold green"),
    LinkState.RECONNECTING: ("◌ reconnecting", "bold red"),
}


def printable(text: str) -> str:
    """Control characters (escape sequences, newlines) shown as ``?``, never sent to the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def describe(status: LinkStatus) -> Text:
    label, style = LOOKS[status.state]
    text = Text.assemble(("server ", "dim"), (printable(status.url), "bold"), "  ", (label, style))
    if status.state is LinkState.RECONNECTING:
        text.append(f" (attempt {status.attempt})", style="dim")
        if status.detail:
            text.append(f": {printable(status.detail)}")
    return text


class ServerLink(Static):
    """``server http://host:port  ● connected`` (attach mode only)."""

    DEFAULT_CSS = """
    ServerLink {
        height: 1;
        background: $panel;
        color: $text;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "server_link", self._show)

    def _show(self, status: LinkStatus | None) -> None:
        self.display = status is not None
        if status is not None:
            self.update(describe(status))
