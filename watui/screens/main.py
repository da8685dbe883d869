"""The main screen: the live sessions table beside the highlighted session's details.

Actions apply to the marked rows when there are any (space marks, ``*`` marks what the filter
shows, escape clears), else to the highlighted one. The header tells the state at a glance:
counts by status, sessions still being restored at start-up, and sparklines of connected
sessions and messages per minute over the last hour.
"""

from __future__ import annotations

from collections import Counter

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Input, ProgressBar, Static

from watui.console import requests as ask
from watui.console.verbs import Verb
from watui.models import Session
from watui.screens.common import WatuiScreen
from watui.widgets.activity import sparkline
from watui.widgets.detail_pane import DetailPane
from watui.widgets.footer import FittingFooter
from watui.widgets.messages import BulkProgress, StateChanged
from watui.widgets.server_link import ServerLink
from watui.widgets.sessions_table import SessionsTable
from watui.widgets.state import SORT_COLUMNS, awaiting_restore
from watui.widgets.status_badge import LEGEND, StatusLook, logged_out
from watui.widgets.text import clean

NARROW_WIDTH = 110
"""Below this many columns the detail pane moves under the table."""

SPARK_MINUTES = 30
"""Bars per sparkline when there is room: one per minute."""

EMPTY_STATE = Text.assemble(
    ("No sessions yet.\n\n", "bold"),
    "Press ", ("n", "bold reverse"), " to link a phone: watui starts a session and shows a QR code.\n",
    "On the phone: WhatsApp → Settings → Linked devices → Link a device, then scan it.\n\n",
    "Press ", ("?", "bold reverse"), " for every key, ", ("ctrl+p", "bold reverse"), " for the command palette.",
)

HEADER_ORDER = ("connected", "to_restore", "qr_ready", "initializing", "connecting", "disconnected", "logged_out",
                "failed", "stopped")
TO_RESTORE = StatusLook("to restore", "◔", "#7986cb", "#000000",
                        "parked when watui last ended; the start-up restore brings it back")
"""Not a status: a parked session the start-up restore has not brought back yet (header only)."""
LOOKS: dict[str, StatusLook] = {**dict(LEGEND), "to_restore": TO_RESTORE}


class MainScreen(WatuiScreen):
    """Every session in one table; actions apply to the highlighted row."""

    BINDINGS = [
        Binding("n", "new", "New", id="main.new", tooltip="Create a session and link a phone"),
        Binding("enter", "open", "Open", id="main.open", tooltip="QR code while linking, details otherwise"),
        Binding("s", "verb('start')", "Start", id="main.start",
                tooltip="Start the highlighted session (or the marked ones)"),
        Binding("x", "verb('stop')", "Stop", id="main.stop",
                tooltip="Stop the highlighted session, keeping its link (or the marked ones)"),
        Binding("r", "verb('restart')", "Restart", id="main.restart",
                tooltip="Stop then start the highlighted session (or the marked ones)"),
        Binding("l", "verb('logout')", "Log out", id="main.logout", tooltip="Unlink the phone (asks first)"),
        Binding("d", "verb('delete')", "Delete", id="main.delete",
                tooltip="Delete the session and its auth data (asks first)"),
        Binding("m", "compose", "Message", id="main.message", show=False,
                tooltip="Send a test message from the highlighted session (connected only)"),
        Binding("p", "link_phone", "Link by phone", id="main.phone", show=False,
                tooltip="Link the highlighted session with a pairing code instead of a QR code"),
        Binding("slash", "filter", "Filter", id="main.filter", tooltip="Filter by name, phone or status"),
        Binding("e", "log('events')", "Log", id="main.log", show=False,
                tooltip="Every event of the highlighted session, live"),
        Binding("E", "log_all", "All events", id="main.log_all", show=False,
                tooltip="Every event of every session, live"),
        Binding("M", "log('messages')", "Message history", id="main.messages", show=False,
                tooltip="Every message of the highlighted session, live"),
        Binding("y", "copy", "Copy", id="main.copy", show=False,
                tooltip="Copy the highlighted session's id, phone number or JID"),
        Binding("o", "sort", "Sort", id="main.sort", show=False, tooltip="Sort by the next column"),
        Binding("O", "reverse_sort", "Reverse sort", id="main.reverse_sort", show=False, tooltip="Flip the sort order"),
        Binding("X", "stop_all", "Stop all", id="main.stop_all", show=False, tooltip="Stop every running session (asks first)"),
        Binding("i", "toggle_detail", "Details pane", id="main.toggle_detail", show=False, tooltip="Show or hide the detail pane"),
        Binding("escape", "clear", "Clear marks/filter", id="main.clear_filter", show=False,
                tooltip="Clear the marks, then the filter"),
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self.query_text = ""
        self.sort_column = "name"
        self.sort_descending = False
        self._had_row = False
        self._counts: tuple[tuple[int, int, bool], Counter[str]] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar")
        yield ServerLink(id="server-link")
        with Horizontal(id="main-body"):
            with Vertical(id="table-area"):
                yield SessionsTable(self.wapp.now, id="sessions")
                yield Static(EMPTY_STATE, id="empty-state")
            yield DetailPane(self.wapp.now, send_key="m", id="detail")
        yield Input(placeholder="filter: name, phone or status (escape clears)", id="filter")
        yield FittingFooter()

    @property
    def table(self) -> SessionsTable:
        return self.query_one(SessionsTable)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.wapp.tune_inputs(self)
        self.refresh_view(everything=True)
        self.table.focus()
        self.set_interval(5.0, self.refresh_times, name="relative-times")
        self._restoring = False
        self.set_interval(0.5, self._watch_restore, name="restore-progress")

    def on_resize(self, event: Resize) -> None:
        narrow = event.size.width < NARROW_WIDTH
        self.set_class(narrow, "-narrow")
        self.query_one(FittingFooter).compact = narrow
        self._draw_topbar()

    def refresh_times(self) -> None:
        """Relative times ("3m ago") age without events; redraw the visible lines."""
        self.table.refresh()
        self._show_detail()
        self._draw_topbar()

    def _watch_restore(self) -> None:
        """The header follows the start-up restore while there is one."""
        restoring = self._restore_running()
        if restoring or self._restoring:
            self._restoring = restoring
            self._draw_topbar()

    # -- view -------------------------------------------------------------------------

    def refresh_view(self, *, changed: frozenset[str] = frozenset(), everything: bool = False) -> None:
        state = self.wapp.state
        table = self.table
        table.sort_column, table.sort_descending = self.sort_column, self.sort_descending
        table.empty_message = (
            f"No session matches {self.query_text!r}. Press escape to clear the filter."
            if self.query_text else "No sessions."
        )
        table.set_rows(state.view(self.query_text, self.sort_column, self.sort_descending))
        empty = not state.sessions
        self.query_one("#empty-state").display = empty
        table.display = not empty
        self.set_class(empty, "-empty")
        if everything or table.current_id in changed or self.detail.session_id != table.current_id:
            self._show_detail()
        self._draw_topbar()

    def look_counts(self) -> Counter[str]:
        """Sessions by how they look (a logged-out session is not counted as a drop), by the
        status the events last told. While the start-up restore runs, the sessions it has yet
        to bring back count as "to restore": parked, not connected, not dropped.

        Counted once per change of the state: a filter keystroke redraws the header too.
        """
        state = self.wapp.state
        restoring = self._restore_running()
        key = (state.version, state.told_version, restoring)
        if self._counts is not None and self._counts[0] == key:
            return self._counts[1]
        counts: Counter[str] = Counter()
        for session in state.sessions.values():
            status, reason = state.status_of(session)
            if restoring and awaiting_restore(session, status, reason):
                counts["to_restore"] += 1
            elif logged_out(status, reason):
                counts["logged_out"] += 1
            else:
                counts[status.value] += 1
        self._counts = (key, counts)
        return counts

    def _restore_running(self) -> bool:
        progress = self.wapp.restore_progress
        return progress is not None and not progress.finished

    def _draw_topbar(self) -> None:
        state = self.wapp.state
        bar = Text()
        bar.append(" watui ", style="bold reverse")
        if self.wapp.service.simulated:
            bar.append(" DEMO ", style="bold black on #f9a825")
        total = len(state.sessions)
        brand = bar.copy()
        bar.append(f"  {total} session{'s' if total != 1 else ''}", style="bold")
        counts = self.look_counts()
        shown = [key for key in HEADER_ORDER if counts.get(key)]
        width = self.size.width
        # Labels when they fit, then icons and numbers alone, then without "sessions", then
        # the short tail; sparklines in what is left.
        for compact in range(4):
            tail = self._header_tail(short=compact == 3)
            summary = Text()
            for key in shown:
                look = LOOKS[key]
                part = f"  {look.icon} {counts[key]} {look.label}" if compact == 0 else f" {look.icon}{counts[key]}"
                summary.append(part, style=Style(color=look.background, bold=True))
            head = bar if compact < 2 else Text.assemble(brand, (f"  {total}", "bold"))
            if head.cell_len + summary.cell_len + tail.cell_len + (24 if compact == 0 else 0) <= width:
                break
        used = head.cell_len + summary.cell_len + tail.cell_len
        self.query_one("#topbar", Static).update(Text.assemble(head, summary, tail, self._sparklines(width - used)))

    def _header_tail(self, *, short: bool) -> Text:
        """Restore progress, marks (and how many the filter hides) and the filter, in words or
        (``short``, for a narrow header) in as few cells as keep their meaning."""
        tail = Text()
        progress = self.wapp.restore_progress
        if progress is not None and not progress.finished:
            words = "" if short else "restoring "
            tail.append(f"  {words}{progress.done}/{progress.total}", style="bold #f9a825")
        marked = len(self.table.marked)
        if marked:
            hidden = sum(1 for i in self.table.marked if self.table.index_of(i) is None)
            text = f"  {marked} marked" + (f", {hidden} hidden" if hidden else "")
            if short:
                text = f"  ▌{marked}" + (f" ({hidden} hidden)" if hidden else "")
            tail.append(text, style="bold reverse")
        if self.query_text:
            query, rows = clean(self.query_text), len(self.table.rows)
            tail.append(f"  “{query}” {rows}" if short else f"  filter “{query}”: {rows} shown", style="bold")
        return tail

    def _sparklines(self, room: int) -> Text:
        """Connected sessions and messages per minute, the last minutes up to an hour, if they fit."""
        # "  ● 12 ▁▂▃  ✉ 3/m ▁▁▅ " : two labels of up to ~9 cells, two bars, gaps.
        connected, messages = self.wapp.activity.series(self.wapp.now())
        conn_label = f"  conn {connected[-1]} "
        msg_label = f"  msg {messages[-1]}/m "
        bars = min(SPARK_MINUTES, (room - len(conn_label) - len(msg_label) - 1) // 2)
        if bars < 6:
            return Text()
        text = Text(" " * max(0, room - len(conn_label) - len(msg_label) - 2 * bars - 1))
        text.append(conn_label, style="bold #2e7d32")
        text.append(sparkline(connected[-bars:]), style="#66bb6a")
        text.append(msg_label, style="bold #29b6f6")
        text.append(sparkline(messages[-bars:]), style="#29b6f6")
        return text

    def _show_detail(self) -> None:
        session_id = self.table.current_id
        session = self.wapp.state.sessions.get(session_id) if session_id else None
        state = self.wapp.state
        self.detail.show(session, state.recent(session_id) if session_id else [],
                         state.deliveries.get(session_id) if session_id else None,
                         state.messages_of(session_id) if session_id else None)
        if session_id:
            self.wapp.ensure_events(session_id)
            self.wapp.ensure_messages(session_id)
            self.wapp.refresh_deliveries(session_id)
            self.wapp.refresh_stats(session_id)

    def on_state_changed(self, message: StateChanged) -> None:
        table = self.table
        if table.marked and (message.removed or message.everything):
            gone = {i for i in table.marked if i not in self.wapp.state.sessions}
            if gone:
                table.set_marks(table.marked - gone)
        self.refresh_view(changed=message.changed | message.removed, everything=message.everything)

    @on(SessionsTable.Highlighted)
    def _highlighted(self, message: SessionsTable.Highlighted) -> None:
        self._show_detail()
        has_row = message.session_id is not None
        if has_row != self._had_row:
            # The footer greys the session keys out without a row; rebuilding it is not
            # free, so only when that changes.
            self._had_row = has_row
            self.refresh_bindings()

    @on(SessionsTable.Opened)
    def _opened(self, message: SessionsTable.Opened) -> None:
        self.post_message(ask.OpenSession(message.session_id))

    @on(SessionsTable.SortRequested)
    def _sort_requested(self, message: SessionsTable.SortRequested) -> None:
        if message.column == self.sort_column:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_column, self.sort_descending = message.column, False
        self.refresh_view()

    # -- filter -----------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.refresh_view()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.display = False
        self.table.focus()

    def action_clear(self) -> None:
        """``escape``: the marks first, then the filter."""
        if self.table.marked:
            self.table.set_marks(set())
            return
        self.action_clear_filter()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.display and not self.query_text:
            return
        box.value = ""
        box.display = False
        self.query_text = ""
        self.refresh_view()
        self.table.focus()

    def set_filter(self, text: str) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(text)
        box.value = text
        self.query_text = text
        self.refresh_view()

    # -- sort -------------------------------------------------------------------------

    def action_sort(self) -> None:
        index = SORT_COLUMNS.index(self.sort_column) if self.sort_column in SORT_COLUMNS else -1
        self.sort_column = SORT_COLUMNS[(index + 1) % len(SORT_COLUMNS)]
        self.sort_descending = False
        self.refresh_view()
        self.notify(f"Sorted by {self.sort_column}", timeout=1.5)

    def action_reverse_sort(self) -> None:
        self.sort_descending = not self.sort_descending
        self.refresh_view()

    # -- actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("verb", "link_phone", "open", "compose", "copy", "log"):
            # Greyed out in the footer without a highlighted session; the app explains any
            # other refusal in a toast.
            return True if self.is_mounted and (self._current() is not None or self._marked()) else None
        return True

    def _current(self) -> Session | None:
        try:
            return self.table.current
        except Exception:
            return None

    def current_session(self) -> Session | None:
        return self._current()

    def _marked(self) -> tuple[str, ...]:
        try:
            table = self.table
        except Exception:
            return ()
        return tuple(s.id for s in self.wapp.state.sorted(self.sort_column, self.sort_descending)
                     if s.id in table.marked)

    def go_to(self, session_id: str) -> None:
        """Select a session, clearing a filter that hides it."""
        if self.table.index_of(session_id) is None and self.query_text:
            self.set_filter("")
        self.table.select(session_id)

    def action_new(self) -> None:
        self.post_message(ask.NewSession())

    def action_open(self) -> None:
        current = self._current()
        if current is not None:
            self.post_message(ask.OpenSession(current.id))

    def action_verb(self, verb: str) -> None:
        """A verb on the marked sessions, or on the highlighted one."""
        targets = self._marked()
        if not targets:
            current = self._current()
            targets = (current.id,) if current is not None else ()
        if targets:
            shown = self.table.index_of
            hidden = frozenset(target for target in targets if shown(target) is None)
            self.post_message(ask.RunVerb(targets, Verb(verb), hidden))

    def action_compose(self) -> None:
        current = self._current()
        if current is not None:
            self.post_message(ask.ComposeMessage(current.id))

    def action_link_phone(self) -> None:
        current = self._current()
        if current is not None:
            self.post_message(ask.LinkByPhone(current.id))

    def action_log(self, kind: str) -> None:
        current = self._current()
        if current is not None:
            self.post_message(ask.OpenLog(current.id, ask.LogKind(kind)))

    def action_log_all(self) -> None:
        self.post_message(ask.OpenLog(None))

    def action_copy(self) -> None:
        current = self._current()
        if current is not None:
            self.post_message(ask.CopyFrom(current.id))

    def action_stop_all(self) -> None:
        self.post_message(ask.StopAll())

    def action_toggle_detail(self) -> None:
        self.toggle_class("-detail-hidden")

    # -- marks and bulk progress --------------------------------------------------------

    @on(SessionsTable.MarksChanged)
    def _marks_changed(self) -> None:
        self._draw_topbar()
        self.refresh_bindings()

    async def on_bulk_progress(self, message: BulkProgress) -> None:
        """A line under the header while a bulk action runs (built on first use: not in first paint)."""
        boxes = self.query("#bulk")
        if message.finished:
            for box in boxes:
                box.display = False
            return
        if not boxes:
            await self.mount(Horizontal(Static("", id="bulk-label"), ProgressBar(id="bulk-bar", show_eta=False),
                                        id="bulk"), after=self.query_one("#topbar"))
        box = self.query_one("#bulk")
        box.display = True
        self.query_one("#bulk-label", Static).update(
            Text(f" {message.verb.ongoing.capitalize()} {message.done}/{message.total} ", style="bold"))
        self.query_one("#bulk-bar", ProgressBar).update(total=message.total, progress=message.done)
