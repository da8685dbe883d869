"""One line for attach mode: which server the console drives, and whether the link is up.

It follows the app's ``server_link`` reactive (a :class:`watui.remote.LinkStatus`, ``None``
when the console runs its own engine, and then the line is hidden). While the server cannot
be reached the line turns red and says how old the view is: ``data as of`` the moment the
link went down (the table dims its rows too, and actions are refused). The reason a link is
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
    LinkState.RECONNECTING: ("✖ unreachable", "bold"),
}


def printable(text: str) -> str:
    """Control characters (escape sequences, newlines) shown as ``?``, never sent to the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def describe(status: LinkStatus) -> Text:
    """What matters first, as a narrow terminal cuts the end off: the server, the state, how
    old the view is; then the reconnect attempts and the reason."""
    label, style = LOOKS[status.state]
    text = Text.assemble(("server ", "dim"), (printable(status.url), "bold"), "  ", (label, style))
    if status.stale:
        if status.as_of is not None:
            text.append(" · data as of ")
            text.append(f"{status.as_of:%H:%M:%S} UTC", style="bold")
        text.append(" · reconnecting")
        if status.attempt:
            text.append(f" (attempt {status.attempt})")
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
    ServerLink.-stale {
        background: $error;
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "server_link", self._show)

    def _show(self, status: LinkStatus | None) -> None:
        self.display = status is not None
        self.set_class(status is not None and status.stale, "-stale")
        if status is not None:
            self.update(describe(status))
