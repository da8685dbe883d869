"""A long log (events or messages) drawn a screen at a time, filtered by kind and text.

Like the sessions table it keeps the lines as data and renders only the visible ones (Line
API), so a history of a hundred thousand events scrolls and filters without building a
widget per line. New lines are appended live; while following, the view stays at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_LINES = 100_000
"""Lines kept; the oldest go first (the store keeps everything)."""


@dataclass(slots=True)
class LogLine:
    key: object
    """Identity: an event id, a message id."""
    kind: str
    """What the type filter matches (an event type, a message direction or status)."""
    text: Text
    haystack: str
    """What the text filter searches, case-folded."""


class LogView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogView { background: $surface; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    BINDINGS = [
        Binding("down,j", "move(1)", "Down", show=False, id="log.down", tooltip="One line down"),
        Binding("up,k", "move(-1)", "Up", show=False, id="log.up", tooltip="One line up"),
        Binding("pagedown,space", "page(1)", "Page down", show=False, id="log.page_down", tooltip="One screen down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="log.page_up", tooltip="One screen up"),
        Binding("home,g", "top", "Oldest", show=False, id="log.top", tooltip="The oldest line"),
        Binding("end,G", "bottom", "Newest", show=False, id="log.bottom",
                tooltip="The newest line, and follow from there"),
    ]

    class FollowChanged(Message):
        """Following the newest line started or stopped (a scroll back, the end reached)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[LogLine] = []
        self.shown: list[LogLine] = []
        self.kind: str | None = None
        self.query_text = ""
        self.following = True
        self._text_console = Console(width=1000, color_system="truecolor", legacy_windows=False)

    # -- data -------------------------------------------------------------------------

    def matches(self, line: LogLine) -> bool:
        return (self.kind is None or line.kind == self.kind) and (
            not self.query_text or self.query_text in line.haystack)

    def extend(self, lines: list[LogLine]) -> None:
        """Append lines (newest last); the view stays at the end while following."""
        if not lines:
            return
        self.lines.extend(lines)
        self.shown.extend(line for line in lines if self.matches(line))
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]
            self._refilter()
        self._resized()

    def replace(self, key: object, line: LogLine) -> bool:
        """Redraw a line in place (a message whose status changed); ``False`` if it is not here."""
        for i in range(len(self.lines) - 1, -1, -1):
            if self.lines[i].key == key:
                self.lines[i] = line
                self._refilter()
                self.refresh()
                return True
        return False

    def kinds_present(self) -> set[str]:
        """The kinds of the lines the text filter lets through (those a type filter can show)."""
        query = self.query_text
        return {line.kind for line in self.lines if not query or query in line.haystack}

    def set_filter(self, kind: str | None, text: str) -> None:
        self.kind, self.query_text = kind, text.strip().casefold()
        self._refilter()
        self._resized()

    def _refilter(self) -> None:
        self.shown = [line for line in self.lines if self.matches(line)]

    def _resized(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.shown))
        if self.following:
            # The new end is known once the layout has the new virtual size.
            self.call_after_refresh(self._to_end)
        self.refresh()

    def _to_end(self) -> None:
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    # -- drawing ----------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        index = int(self.scroll_offset.y) + y
        base = self.rich_style
        if index >= len(self.shown):
            return Strip.blank(width, base)
        text = self.shown[index].text
        segments = [Segment(s.text, base + s.style if s.style else base)
                    for s in text.render(self._text_console) if s.text != "\n"]
        return Strip(segments).crop_extend(0, width, base)

    def on_resize(self) -> None:
        self._resized()

    # -- keys -------------------------------------------------------------------------

    def _body(self) -> int:
        return max(1, self.size.height)

    def _at_end(self) -> bool:
        return self.scroll_offset.y >= max(0, len(self.shown) - self._body())

    def _moved(self) -> None:
        # Scrolling back stops following; reaching the end again resumes it.
        following = self._at_end()
        if following != self.following:
            self.following = following
            self.post_message(self.FollowChanged())

    def action_move(self, delta: int) -> None:
        self.scroll_to(y=self.scroll_offset.y + delta, animate=False, immediate=True)
        self._moved()

    def action_page(self, direction: int) -> None:
        self.scroll_to(y=self.scroll_offset.y + direction * max(1, self._body() - 1), animate=False,
                       immediate=True)
        self._moved()

    def action_top(self) -> None:
        self.scroll_to(y=0, animate=False, immediate=True)
        self._moved()

    def action_bottom(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        if not self.following:
            self.following = True
            self.post_message(self.FollowChanged())
