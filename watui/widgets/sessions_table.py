"""The sessions table: a virtual list that draws only the rows on screen.

Textual's ``DataTable`` measures every cell it is given, so filtering or re-sorting 10,000
sessions means rebuilding 10,000 rows. This widget keeps just the ordered list of
:class:`~watui.models.Session` snapshots and renders the visible lines on demand (Line API),
so a filter keystroke, a sort or a burst of status changes costs one list operation and one
repaint, whatever the number of sessions.

Attached to a server that cannot be reached (the app's ``server_link`` is stale), every row is
drawn dimmed, its status without its colour and with a question mark: the last known status,
not the current one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from watui.models import Session
from watui.remote.link import LinkStatus
from watui.widgets.status_badge import (
    BADGE_WIDTH,
    PROXY_MARK,
    ago,
    phone,
    session_badge,
    session_look,
)
from watui.widgets.text import clean, fit


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    width: int
    """Widest it gets; 0 means "take what is left" (at least ``min_width``). Columns whose
    content is short take less (:meth:`SessionsTable.content_widths`), and what they leave
    goes to the names."""
    min_width: int = 0
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME", 0, 12),
    Column("status", "STATUS", BADGE_WIDTH),
    Column("node", "NODE", 12),
    Column("phone", "PHONE", 16),
    Column("activity", "ACTIVE", 8),
    Column("messages", "IN/OUT", 13, right=True),
    Column("reconnects", "↻", 4, right=True),
)
SORT_SIGN = 2
"""`` ▲`` after a sorted column's title: every title keeps room for it, so sorting never
moves the columns."""
DROP_ORDER = ("reconnects", "phone", "messages", "node")
"""Columns given up first when the table is too narrow for all of them."""
CLUSTER_COLUMNS = frozenset({"node"})
"""Shown only when some session has a node (cluster mode), so a single node's table is as before."""


def cell_text(column: str, session: Session, now: datetime) -> str:
    if column == "name":
        return clean(session.name) + (PROXY_MARK if session.settings.proxy else "")
    if column == "phone":
        return phone(session.phone_number) if session.phone_number else "—"
    if column == "activity":
        return ago(session.last_activity_at, now)
    if column == "messages":
        return f"{session.messages_received}/{session.messages_sent}"
    if column == "reconnects":
        return str(session.reconnect_count)
    if column == "node":
        return clean(session.node_id) if session.node_id else "—"
    return session.status.value


class SessionsTable(ScrollView, can_focus=True):
    """Sessions, one per line, with a fixed header, a row cursor and column sorting."""

    COMPONENT_CLASSES = {
        "sessions-table--header",
        "sessions-table--sorted",
        "sessions-table--cursor",
        "sessions-table--cursor-blurred",
        "sessions-table--dim",
        "sessions-table--marked",
    }

    DEFAULT_CSS = """
    SessionsTable {
        background: $surface;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    SessionsTable > .sessions-table--header { text-style: bold; color: $text-muted; background: $panel; }
    SessionsTable > .sessions-table--sorted { text-style: bold underline; color: $text; background: $panel; }
    SessionsTable > .sessions-table--cursor { background: $accent 45%; text-style: bold; }
    SessionsTable > .sessions-table--cursor-blurred { background: $accent 20%; }
    SessionsTable > .sessions-table--dim { color: $text-muted; }
    SessionsTable > .sessions-table--marked { background: $warning 25%; color: $text-warning; text-style: bold; }
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up", tooltip="Previous session"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down", tooltip="Next session"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up", tooltip="One screen up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down", tooltip="One screen down"),
        Binding("home,g", "jump(0)", "First", show=False, id="table.first", tooltip="First session"),
        Binding("end,G", "jump(-1)", "Last", show=False, id="table.last", tooltip="Last session"),
        Binding("space", "mark", "Mark", show=False, id="table.mark",
                tooltip="Mark or unmark the session (actions then apply to every marked one)"),
        Binding("asterisk", "mark_all", "Mark shown", show=False, id="table.mark_all",
                tooltip="Mark every session the filter shows"),
    ]

    MARK = "▌"
    """Drawn in the first cell of a marked row."""

    @dataclass
    class Highlighted(Message):
        """The cursor moved to another session (``None``: the table is empty)."""

        table: SessionsTable
        session_id: str | None

    @dataclass
    class Opened(Message):
        """Double click on a row (the screen binds ``enter`` itself)."""

        table: SessionsTable
        session_id: str

    @dataclass
    class MarksChanged(Message):
        """Rows were marked or unmarked."""

        table: SessionsTable
        marked: frozenset[str]

    @dataclass
    class SortRequested(Message):
        """A header was clicked."""

        table: SessionsTable
        column: str

    def __init__(
        self,
        now: Callable[[], datetime],
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._now = now
        self.rows: list[Session] = []
        self._index: dict[str, int] = {}
        self.cursor = 0
        self.sort_column = "name"
        self.sort_descending = False
        self.empty_message = "No sessions."
        self._last_highlight: str | bool | None = False
        self.marked: set[str] = set()
        self.clustered = False
        """Some session shown has a node: the NODE column is on."""
        self.stale = False
        """The rows are the last known state of an unreachable server (attach mode)."""
        self._widths: dict[str, int] = {}
        """Content-sized widths of the columns that have them (see :meth:`content_widths`)."""

    def on_mount(self) -> None:
        if hasattr(self.app, "server_link"):  # the console's app; a bare test app has none
            self.watch(self.app, "server_link", self._link_changed)

    def _link_changed(self, status: LinkStatus | None) -> None:
        stale = status is not None and status.stale
        if stale != self.stale:
            self.stale = stale
            self.refresh()

    # -- data -------------------------------------------------------------------------

    @property
    def current(self) -> Session | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor]
        return None

    @property
    def current_id(self) -> str | None:
        current = self.current
        return current.id if current else None

    def set_rows(self, rows: list[Session], *, keep: str | None = None) -> None:
        """Show ``rows`` in this order; the cursor stays on the same session if it is still there."""
        keep = keep if keep is not None else self.current_id
        self.rows = rows
        self._index = {s.id: i for i, s in enumerate(rows)}
        self.clustered = any(s.node_id for s in rows)
        self._widths = self.content_widths(rows)

        if keep is not None and keep in self._index:
            self.cursor = self._index[keep]
        else:
            self.cursor = min(self.cursor, max(0, len(rows) - 1))
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self._scroll_cursor_into_view()
        self.refresh()
        self._announce()

    @staticmethod
    def content_widths(rows: list[Session]) -> dict[str, int]:
        """Widths that hold every row's phone, message counts, reconnects and node (and the
        title with its sort sign), at most each column's width: computed from the largest
        numbers and longest ids, not by drawing every row, so 10,000 rows cost a few ms."""
        def title(key: str) -> int:
            return next(cell_len(c.title) for c in COLUMNS if c.key == key) + SORT_SIGN

        phones = max((len(s.phone_number) + 1 for s in rows if s.phone_number), default=1)
        received = max((s.messages_received for s in rows), default=0)
        sent = max((s.messages_sent for s in rows), default=0)
        reconnects = max((s.reconnect_count for s in rows), default=0)
        nodes = max((cell_len(clean(s.node_id)) for s in rows if s.node_id), default=1)
        content = {  # left-aligned text gets a cell of air before the next column
            "phone": phones + 1,
            "messages": len(str(received)) + 1 + len(str(sent)),
            "reconnects": len(str(reconnects)),
            "node": nodes + 1,
        }
        widths = {c.key: c.width for c in COLUMNS}
        return {key: min(widths[key], max(title(key), size)) for key, size in content.items()}

    # -- marks --------------------------------------------------------------------------

    def set_marks(self, marked: set[str]) -> None:
        self.marked = set(marked)
        self.refresh()
        self.post_message(self.MarksChanged(self, frozenset(self.marked)))

    def action_mark(self) -> None:
        current = self.current_id
        if current is None:
            return
        self.marked.symmetric_difference_update({current})
        self.post_message(self.MarksChanged(self, frozenset(self.marked)))
        self.refresh()
        self._move_to(self.cursor + 1)

    def action_mark_all(self) -> None:
        self.set_marks(self.marked | {s.id for s in self.rows})

    def index_of(self, session_id: str) -> int | None:
        return self._index.get(session_id)

    def select(self, session_id: str) -> bool:
        index = self._index.get(session_id)
        if index is None:
            return False
        self._move_to(index)
        return True

    # -- layout -----------------------------------------------------------------------

    def columns_for(self, width: int) -> list[tuple[Column, int]]:
        """Visible columns and their widths for a table ``width`` cells wide."""
        shown = [c for c in COLUMNS if self.clustered or c.key not in CLUSTER_COLUMNS]

        def need(cols: list[Column]) -> int:
            return 1 + sum(self._widths.get(c.key, c.width) or c.min_width for c in cols) + (len(cols) - 1)

        for key in DROP_ORDER:
            if need(shown) <= width:
                break
            shown = [c for c in shown if c.key != key]
        sized = [(c, self._widths.get(c.key, c.width)) for c in shown]
        fixed = 1 + sum(w for _, w in sized) + (len(shown) - 1)
        flexible = max(0, width - fixed)
        return [(c, w or max(c.min_width, flexible)) for c, w in sized]

    def _body_height(self) -> int:
        return max(0, self.size.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        body = self._body_height()
        if body <= 0:
            return
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)
        self._scroll_cursor_into_view()

    # -- rendering --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        base = self.rich_style
        if y == 0:
            return self._header(width)
        index = int(self.scroll_offset.y) + y - 1
        if index >= len(self.rows):
            if not self.rows and y == 2:
                dim = Style(color=self.get_component_rich_style("sessions-table--dim").color)
                text = fit("  " + self.empty_message, width)
                return Strip([Segment(text, base + dim)], width)
            return Strip.blank(width, base)
        return self._row(self.rows[index], index == self.cursor, width)

    def _header(self, width: int) -> Strip:
        header = self.get_component_rich_style("sessions-table--header")
        sorted_style = self.get_component_rich_style("sessions-table--sorted")
        segments = [Segment(" ", header)]
        columns = self.columns_for(width)
        arrow = "▼" if self.sort_descending else "▲"
        hidden_sort = next((c for c in COLUMNS if c.key == self.sort_column), None)
        if hidden_sort is not None and any(c.key == self.sort_column for c, _ in columns):
            hidden_sort = None
        for i, (column, w) in enumerate(columns):
            title = column.title
            style = header
            if column.key == self.sort_column:
                title = f"{title} {arrow}"
                style = sorted_style
            elif column.key == "name" and hidden_sort is not None:
                # Sorted by a column this width leaves out: say so where the eye starts.
                labels = (f"{title} · by {hidden_sort.key} {arrow}", f"by {hidden_sort.key} {arrow}",
                          f"by {hidden_sort.title} {arrow}")
                title = next((label for label in labels if cell_len(label) <= w), labels[-1])
                style = sorted_style
            segments.append(Segment(fit(title, w, column.right), style))
            if i < len(columns) - 1:
                segments.append(Segment(" ", header))
        return Strip(segments).crop_extend(0, width, header)

    def _row(self, session: Session, is_cursor: bool, width: int) -> Strip:
        base = self.rich_style
        if is_cursor:
            name = "sessions-table--cursor" if self.has_focus else "sessions-table--cursor-blurred"
            base = base + self.get_component_rich_style(name)
        marked = session.id in self.marked
        if marked:
            base = base + self.get_component_rich_style("sessions-table--marked")
        # Only the colour of the dim style: its background would hide the cursor.
        dim = base + Style(color=self.get_component_rich_style("sessions-table--dim").color)
        if self.stale:
            base = dim
        now = self._now()
        segments = [Segment(self.MARK if marked else " ", base)]
        columns = self.columns_for(width)
        for i, (column, w) in enumerate(columns):
            if column.key == "status" and self.stale:  # the last known status, as such
                look = session_look(session)
                segments.append(Segment(f" {look.icon}", base + Style(color=look.background)))
                segments.append(Segment(fit(f" {look.label}?", max(0, w - 2)), base + Style(italic=True)))
            elif column.key == "status":
                badge = session_badge(session, width=w)
                segments.append(Segment(badge.plain, badge.style if isinstance(badge.style, Style) else None))
            else:
                text = cell_text(column.key, session, now)
                style = dim if text in ("—", "0/0", "0") else base
                if column.key == "name":
                    style = base + Style(bold=True)
                segments.append(Segment(fit(text, w, column.right), style))
            if i < len(columns) - 1:
                segments.append(Segment(" ", base))
        return Strip(segments).crop_extend(0, width, base)

    # -- cursor -----------------------------------------------------------------------

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(index, len(self.rows) - 1))
        if index == self.cursor:
            self._announce()
            return
        self.cursor = index
        self._scroll_cursor_into_view()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        current = self.current_id
        if current != self._last_highlight:
            self._last_highlight = current
            self.post_message(self.Highlighted(self, current))

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self._body_height() - 1))

    def action_jump(self, index: int) -> None:
        self._move_to(index if index >= 0 else len(self.rows) - 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        # Positions inside the border: the click event counts from the widget's outer edge.
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            x = offset.x - 1
            for column, w in self.columns_for(self.scrollable_content_region.width or self.size.width):
                if 0 <= x < w:
                    self.post_message(self.SortRequested(self, column.key))
                    return
                x -= w + 1
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= index < len(self.rows):
            self._move_to(index)
            if event.chain >= 2:
                self.post_message(self.Opened(self, self.rows[index].id))
