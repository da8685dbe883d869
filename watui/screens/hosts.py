"""The engine hosts view (``H``): which processes run the engines, and whose sessions are where.

Fed by :meth:`SessionService.engine_hosts` and read again every ``REFRESH_EVERY`` seconds; the
next read is scheduled only once the previous one has finished. Session names are shown as
plain text (they are user data, never markup).
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Static

from watui.errors import WatuiError
from watui.models import EngineHost
from watui.screens.common import WatuiScreen
from watui.widgets.footer import FittingFooter

REFRESH_EVERY = 2.0
"""Seconds between two reads of the host list."""

NONE_RUNNING = (
    "No engine host is running: either no session is running, or the engine runs inside "
    "watui itself (WATUI_ENGINE_ISOLATION=inline)."
)

COLUMNS = ("Host", "PID", "Sessions", "Up", "Connects", "Restarts", "Crashes", "Running here")


def uptime(started_at: datetime, now: datetime) -> str:
    """``2h 05m``, ``12m 40s``, ``8s``: how long a host has run."""
    seconds = max(0, int((now - started_at).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def fit_names(names: list[str], width: int) -> str:
    """As many names as fit in ``width`` cells, then ``+N more``."""
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        text = ", ".join(names[:shown]) + (f", +{rest} more" if rest else "")
        if len(text) <= width:
            return text
    if not names:
        return ""
    tail = f" +{len(names) - 1}" if len(names) > 1 else ""
    return names[0][: max(1, width - len(tail) - 1)] + "…" + tail


class HostsScreen(WatuiScreen):
    """Every engine host process: pid, sessions, uptime, connect attempts, restarts (every new
    process in the slot, idle stops and drains too) and, in red, crashes (the ones that ended
    unasked)."""

    BINDINGS = [
        Binding("escape,H", "back", "Back", id="hosts.back", tooltip="Back to the sessions"),
        Binding("r", "reload", "Refresh", id="hosts.refresh", tooltip="Read the host list again now"),
    ]

    def __init__(self) -> None:
        super().__init__(id="hosts")
        self.hosts: list[EngineHost] | None = None
        self.error: str | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(" Engine hosts", id="hosts-title", classes="link-title")
        yield Static("", id="hosts-summary")
        yield DataTable(id="hosts-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="hosts-empty")
        yield FittingFooter()

    async def on_mount(self) -> None:
        await self.reload()

    async def reload(self) -> None:
        """Read the host list, draw it, and schedule the next read."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        try:
            self.hosts, self.error = await self.wapp.service.engine_hosts(), None
        except WatuiError as exc:
            self.hosts, self.error = None, exc.message
        if not self.is_attached:
            return
        self.draw()
        self._timer = self.set_timer(REFRESH_EVERY, self.reload, name="hosts-refresh")

    async def action_reload(self) -> None:
        await self.reload()

    def action_back(self) -> None:
        self.dismiss()

    def refresh_times(self) -> None:
        if self.hosts is not None:
            self.draw()

    def on_resize(self) -> None:
        if self.hosts is not None:
            self.draw()

    def draw(self) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        summary = self.query_one("#hosts-summary", Static)
        empty = self.query_one("#hosts-empty", Static)
        hosts = self.hosts or []
        now = self.wapp.now()
        rows = [
            [host.id, str(host.pid) if host.pid else "—", str(len(host.sessions)),
             uptime(host.started_at, now), str(host.connects), str(host.restarts), str(host.crashes)]
            for host in hosts
        ]
        # The session names get whatever width the numbers leave, so nothing scrolls sideways.
        used = sum(max(len(c) for c in column) + 2 for column in zip(COLUMNS, *rows, strict=False))
        names_width = max(12, self.size.width - used - 4)
        table.clear(columns=True)
        for label in COLUMNS[:-1]:
            table.add_column(label, key=label)
        table.add_column(COLUMNS[-1], key=COLUMNS[-1], width=names_width)
        names = self.wapp.state.sessions
        for host, row in zip(hosts, rows, strict=True):
            running = [names[s].name if s in names else s for s in host.sessions]
            table.add_row(
                Text(row[0], style="bold"),
                *(Text(cell, justify="right") for cell in row[1:6]),
                Text(row[6], justify="right", style="bold red" if host.crashes else ""),
                Text(fit_names(running, names_width) or "—", no_wrap=True),
                key=host.id,
            )
        sessions = sum(len(h.sessions) for h in hosts)
        if self.error is not None:
            summary.update(Text(f" {self.error}", style="bold red"))
        else:
            summary.update(Text(
                f" {len(hosts)} host{'s' if len(hosts) != 1 else ''} running "
                f"{sessions} session{'s' if sessions != 1 else ''}"
                f" · refreshed every {REFRESH_EVERY:.0f} s", style="dim",
            ))
        table.display = bool(hosts)
        empty.display = not hosts and self.error is None
        empty.update(NONE_RUNNING)
