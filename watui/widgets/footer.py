"""The key footer, cut to whole keys: what does not fit is left out, never sliced.

Textual's footer lays its keys out in one row and clips the row at the screen's edge, so an
80-column terminal showed ``… / Filter ?`` (the help key without its word) and a 60-column one
a stray ``F``. :class:`FittingFooter` measures each key as the footer will draw it and leaves
out whole keys, least needed first (:data:`DROP_ORDER`), until the rest fit. Help (``?``),
which lists every key, and quit are always kept, as is the command palette.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: Keys left out first when the row is too narrow, by action (keys not named here go before
#: these, from the right).
DROP_ORDER: Final = (
    "verb('logout')", "verb('restart')", "verb('delete')", "filter", "verb('stop')", "verb('start')",
    "open", "new",
)


def key_width(key: FooterKey, *, compact: bool) -> int:
    """Cells ``key`` takes in the footer row, margins included (Textual's footer CSS)."""
    label = cell_len(key.key_display)
    words = cell_len(key.description)
    if key.has_class("-command-palette"):  # docked right, a one-cell border on its left
        return 1 + label + 1 + words + (0 if compact else 1)
    if compact:  # no key padding; one space before the words; one cell of margin after
        return label + (1 + words if words else 0) + 1
    return 1 + label + 1 + (words + 1 if words else 0)  # key padded both sides, words on the right


def fitting(keys: list[FooterKey], width: int, *, compact: bool) -> list[FooterKey]:
    """The keys to show in ``width`` cells: all of them if they fit, else without the least
    needed ones (whole keys, in their original order)."""
    shown = list(keys)

    def need() -> int:
        return sum(key_width(key, compact=compact) for key in shown)

    for key in _drop_candidates(keys):
        if need() <= width:
            break
        shown.remove(key)
    return shown


def _drop_candidates(keys: list[FooterKey]) -> Iterable[FooterKey]:
    droppable = [key for key in keys if not _kept(key)]
    ranked = {action: rank for rank, action in enumerate(DROP_ORDER)}
    unranked = [key for key in reversed(droppable) if key.action not in ranked]
    yield from unranked
    yield from sorted((key for key in droppable if key.action in ranked), key=lambda key: ranked[key.action])


def _kept(key: FooterKey) -> bool:
    if key.has_class("-command-palette"):
        return True
    return key.action in ("help", "quit")


class FittingFooter(Footer):
    """Textual's footer, showing whole keys only (see the module)."""

    def compose(self) -> ComposeResult:
        widgets: list[Widget] = list(super().compose())
        keys = [widget for widget in widgets if isinstance(widget, FooterKey)]
        width = self.size.width or self.app.size.width
        shown = set(map(id, fitting(keys, width, compact=self.compact)))
        for widget in widgets:
            if not isinstance(widget, FooterKey) or id(widget) in shown:
                yield widget

    def _on_resize(self, event: events.Resize) -> None:
        if self.is_mounted:
            self.call_after_refresh(self.recompose)

    def watch_compact(self) -> None:
        if self.is_mounted:
            self.call_after_refresh(self.recompose)
