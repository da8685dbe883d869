"""The main screen: the live sessions table beside the highlighted session's details."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Footer, Input, Static

from watui.machine import Status
from watui.models import Session
from watui.screens.common import WatuiScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.messages import StateChanged
from watui.widgets.server_link import ServerLink
from watui.widgets.sessions_table import SessionsTable
from watui.widgets.state import SORT_COLUMNS
from watui.widgets.status_badge import STATUS_LOOKS

NARROW_WIDTH = 110
"""Below this many columns the detail pane moves under the table."""

EMPTY_STATE = Text.assemble(
    ("No sessions yet.\n\n", "bold"),
    "Press ", ("n", "bold reverse"), " to link a phone: watui starts a session and shows a QR code.\n",
    "On the phone: WhatsApp → Settings → Linked devices → Link a device, then scan it.\n\n",
    "Press ", ("?", "bold reverse"), " for every key, ", ("ctrl+p", "bold reverse"), " for the command palette.",
)


class MainScreen(WatuiScreen):
    """Every session in one table; actions apply to the highlighted row."""

    BINDINGS = [
        Binding("n", "new", "New", id="main.new", tooltip="Create a session and link a phone"),
        Binding("enter", "open", "Open", id="main.open", tooltip="QR code while linking, details otherwise"),
        Binding("s", "session('start')", "Start", id="main.start", tooltip="Start the highlighted session"),
        Binding("x", "session('stop')", "Stop", id="main.stop", tooltip="Stop the highlighted session (keeps its link)"),
        Binding("r", "session('restart')", "Restart", id="main.restart", tooltip="Stop then start the highlighted session"),
        Binding("l", "logout", "Log out", id="main.logout", tooltip="Unlink the phone (asks first)"),
        Binding("d", "delete", "Delete", id="main.delete", tooltip="Delete the session and its auth data (asks first)"),
        Binding("m", "compose", "Message", id="main.message", show=False,
                tooltip="Send a test message from the highlighted session (connected only)"),
        Binding("p", "link_phone", "Link by phone", id="main.phone", show=False,
                tooltip="Link the highlighted session with a pairing code instead of a QR code"),
        Binding("slash", "filter", "Filter", id="main.filter", tooltip="Filter by name, phone or status"),
        Binding("o", "sort", "Sort", id="main.sort", show=False, tooltip="Sort by the next column"),
        Binding("O", "reverse_sort", "Reverse sort", id="main.reverse_sort", show=False, tooltip="Flip the sort order"),
        Binding("X", "stop_all", "Stop all", id="main.stop_all", show=False, tooltip="Stop every running session (asks first)"),
        Binding("i", "toggle_detail", "Details pane", id="main.toggle_detail", show=False, tooltip="Show or hide the detail pane"),
        Binding("escape", "clear_filter", "Clear filter", id="main.clear_filter", show=False, tooltip="Clear the filter"),
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self.query_text = ""
        self.sort_column = "name"
        self.sort_descending = False
        self._had_row = False

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar")
        yield ServerLink(id="server-link")
        with Horizontal(id="main-body"):
            with Vertical(id="table-area"):
                yield SessionsTable(self.wapp.now, id="sessions")
                yield Static(EMPTY_STATE, id="empty-state")
            yield DetailPane(self.wapp.now, send_key="m", id="detail")
        yield Input(placeholder="filter: name, phone or status (escape clears)", id="filter")
        yield Footer()

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

    def on_resize(self, event: Resize) -> None:
        narrow = event.size.width < NARROW_WIDTH
        self.set_class(narrow, "-narrow")
        self.query_one(Footer).compact = narrow
        self._draw_topbar()

    def refresh_times(self) -> None:
        """Relative times ("3m ago") age without events; redraw the visible lines."""
        self.table.refresh()
        self._show_detail()

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

    def _draw_topbar(self) -> None:
        state = self.wapp.state
        bar = Text()
        bar.append(" watui ", style="bold reverse")
        if self.wapp.service.simulated:
            bar.append(" DEMO ", style="bold black on #f9a825")
        total = len(state.sessions)
        bar.append(f"  {total} session{'s' if total != 1 else ''}", style="bold")
        counts = state.counts()
        shown = [s for s in (Status.CONNECTED, Status.QR_READY, Status.INITIALIZING, Status.CONNECTING,
                             Status.DISCONNECTED, Status.FAILED, Status.STOPPED) if counts.get(s)]
        tail = Text()
        if self.query_text:
            tail.append(f"   filter “{self.query_text}”: {len(self.table.rows)} shown", style="bold")
        # Labels when they fit, icons and numbers alone on a narrow terminal.
        for with_label in (True, False):
            summary = Text()
            for status in shown:
                look = STATUS_LOOKS[status]
                label = f" {look.label}" if with_label else ""
                summary.append(f"  {look.icon} {counts[status]}{label}", style=Style(color=look.background, bold=True))
            if bar.cell_len + summary.cell_len + tail.cell_len <= self.size.width or not with_label:
                break
        self.query_one("#topbar", Static).update(Text.assemble(bar, summary, tail))

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

    def on_state_changed(self, message: StateChanged) -> None:
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
        self.wapp.open_session(message.session_id)

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
        if action in ("session", "logout", "delete", "link_phone", "open", "compose"):
            # Greyed out in the footer without a highlighted session; the service explains
            # any other refusal in a toast.
            return True if self.is_mounted and self._current() is not None else None
        return True

    def _current(self) -> Session | None:
        try:
            return self.table.current
        except Exception:
            return None

    def action_new(self) -> None:
        self.wapp.new_session()

    def action_open(self) -> None:
        current = self._current()
        if current is not None:
            self.wapp.open_session(current.id)

    def action_session(self, verb: str) -> None:
        current = self._current()
        if current is not None:
            self.wapp.run_action_on(current.id, verb)

    def action_logout(self) -> None:
        current = self._current()
        if current is not None:
            self.wapp.confirm_then(
                current.id, "logout", "Log out?",
                f"Unlink {current.name!r} from its phone? Linking it again needs a new scan.", "Log out",
            )

    def action_delete(self) -> None:
        current = self._current()
        if current is not None:
            self.wapp.confirm_then(
                current.id, "delete", "Delete session?",
                f"Delete {current.name!r}, its history and its auth data? This cannot be undone.", "Delete",
            )

    def action_compose(self) -> None:
        current = self._current()
        if current is not None:
            self.wapp.compose_message(current.id)

    def action_link_phone(self) -> None:
        current = self._current()
        if current is not None:
            self.wapp.link_by_phone(current.id)

    def action_stop_all(self) -> None:
        self.wapp.stop_all()

    def action_toggle_detail(self) -> None:
        self.toggle_class("-detail-hidden")
