"""The QR code drawn with half blocks: two modules per terminal cell, black on white."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from watui import qr
from watui.qr import DARK, HALF_BLOCK, LIGHT, HalfBlockCell, half_block_cells

_STYLES: Final[dict[HalfBlockCell, Style]] = {
    (top, bottom): Style(color=DARK if top else LIGHT, bgcolor=DARK if bottom else LIGHT)
    for top in (False, True)
    for bottom in (False, True)
}


@lru_cache(maxsize=1024)
def _half_block_text(payload: str) -> Text:
    text = Text(no_wrap=True, overflow="crop", end="")
    for index, line in enumerate(half_block_cells(payload)):
        if index:
            text.append("\n")
        # One span per run of equal cells: far fewer spans for Textual to render.
        start = 0
        for x in range(1, len(line) + 1):
            if x == len(line) or line[x] != line[start]:
                text.append(HALF_BLOCK * (x - start), _STYLES[line[start]])
                start = x
    return text


def half_block_text(payload: str) -> Text:
    """The code as a :class:`rich.text.Text` of ``▀`` cells, lines joined with ``"\\n"``.

    Every cell has an explicit foreground (top module) and background (bottom module) of
    exactly ``#000000`` or ``#ffffff``, so the terminal's theme colours never leak in.
    It does not wrap (a wrapped code would not scan). Returns a copy of a cached Text,
    because Text is mutable.
    """
    return _half_block_text(payload).copy()


class QrView(Static):
    """Shows one QR payload; ``show`` swaps the code in place when it rotates."""

    DEFAULT_CSS = """
    QrView { width: auto; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.payload: str | None = None

    def show(self, payload: str | None) -> None:
        if payload == self.payload:
            return
        self.payload = payload
        self.update(half_block_text(payload) if payload else "")

    @staticmethod
    def size_needed(payload: str) -> tuple[int, int]:
        """``(columns, lines)`` the code needs, quiet zone included."""
        return qr.terminal_size(payload)
