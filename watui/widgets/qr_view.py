"""The QR code drawn with block characters, black on white, in the grain the screen chooses.

Half blocks give two modules per cell in two colours (``▀``: foreground = top module,
background = bottom module). Quadrants and sextants give four and six: every cell is dark
ink (the glyph covers the dark modules) on a light background. :mod:`watui.qr` has the cells.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from watui import qr
from watui.qr import DARK, HALF, HALF_BLOCK, LIGHT, BlockMode, HalfBlockCell

_STYLES: Final[dict[HalfBlockCell, Style]] = {
    (top, bottom): Style(color=DARK if top else LIGHT, bgcolor=DARK if bottom else LIGHT)
    for top in (False, True)
    for bottom in (False, True)
}

#: Quadrants and sextants: dark ink on light paper, the same in every cell.
_INK: Final = Style(color=DARK, bgcolor=LIGHT)


@lru_cache(maxsize=1024)
def _half_block_text(payload: str) -> Text:
    text = Text(no_wrap=True, overflow="crop", end="")
    for index, line in enumerate(qr.half_block_cells(payload)):
        if index:
            text.append("\n")
        # One span per run of equal cells: far fewer spans for Textual to render.
        start = 0
        for x in range(1, len(line) + 1):
            if x == len(line) or line[x] != line[start]:
                text.append(HALF_BLOCK * (x - start), _STYLES[line[start]])
                start = x
    return text


@lru_cache(maxsize=1024)
def _block_text(payload: str, mode: BlockMode) -> Text:
    if mode == HALF:
        return _half_block_text(payload)
    text = Text(no_wrap=True, overflow="crop", end="")
    for index, line in enumerate(qr.block_lines(payload, mode)):
        if index:
            text.append("\n")
        text.append(line, _INK)  # one span per line: every cell has the same colours
    return text


def half_block_text(payload: str) -> Text:
    """The code as a :class:`rich.text.Text` of ``▀`` cells, lines joined with ``"\\n"``.

    Every cell has an explicit foreground (top module) and background (bottom module) of
    exactly ``#000000`` or ``#ffffff``, so the terminal's theme colours never leak in.
    It does not wrap (a wrapped code would not scan). Returns a copy of a cached Text,
    because Text is mutable.
    """
    return _half_block_text(payload).copy()


def block_text(payload: str, mode: BlockMode = HALF) -> Text:
    """The code drawn in ``mode`` (:data:`watui.qr.BLOCK_MODES`), as a fresh Text.

    Half blocks are :func:`half_block_text`. Quadrants and sextants put ``#000000`` on
    ``#ffffff`` in every cell, the glyph's ink on the dark modules. It never wraps.
    """
    return _block_text(payload, mode).copy()


class QrView(Static):
    """Shows one QR payload; ``show`` swaps the code in place when it rotates."""

    DEFAULT_CSS = """
    QrView { width: auto; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.payload: str | None = None
        self.mode: BlockMode = HALF

    def show(self, payload: str | None, mode: BlockMode = HALF) -> None:
        if payload == self.payload and mode == self.mode:
            return
        self.payload = payload
        self.mode = mode
        self.update(block_text(payload, mode) if payload else "")

    @staticmethod
    def size_needed(payload: str, mode: BlockMode = HALF) -> tuple[int, int]:
        """``(columns, lines)`` the code needs in ``mode``, quiet zone included."""
        return qr.terminal_size(payload, mode)
