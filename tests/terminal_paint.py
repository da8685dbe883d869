"""Paint terminal cells to pixels the way a terminal draws block elements, for zxing to read.

Terminals draw the block elements (U+2580-259F) and the sextants (U+1FB00-1FB3B) as
geometry, not from the font, so a QR code drawn in them is tested here without fonts: every
cell is a 2×6 grid of sub-blocks, painted in the cell's foreground where the glyph has ink
and in its background elsewhere. What a glyph covers is read from its Unicode *name*
(``QUADRANT UPPER LEFT AND LOWER RIGHT``, ``BLOCK SEXTANT-1346``), not from watui's tables,
so the painting checks those tables instead of repeating them.

Cells come from the screen the app has composed (characters with their colours), the same
segments its SVG screenshot is made of. A cell without a colour gets a dark terminal theme's,
so a code that left a colour to the terminal would not scan.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from PIL import Image

CELL_W, CELL_H = 12, 24
"""Pixels per cell: 1:2 like a terminal's, divisible by the 2×6 sub-block grid."""

GRID_W, GRID_H = 2, 6
"""Sub-blocks per cell: halves, quadrants (2×2 of them 1×3) and sextants (2×3 of 1×2)."""

THEME_FG, THEME_BG = "#c0c0c0", "#1e1e1e"
"""A dark terminal theme, for cells that leave their colours to the terminal."""

# Rows of the 2×6 grid that each named part covers.
_HALF_ROWS = {"UPPER": range(0, 3), "LOWER": range(3, 6)}
_QUADRANTS = {
    "UPPER LEFT": {(0, y) for y in range(0, 3)},
    "UPPER RIGHT": {(1, y) for y in range(0, 3)},
    "LOWER LEFT": {(0, y) for y in range(3, 6)},
    "LOWER RIGHT": {(1, y) for y in range(3, 6)},
}


def ink(char: str) -> frozenset[tuple[int, int]] | None:
    """The ``(column, row)`` sub-blocks of the 2×6 grid that ``char`` inks, from its Unicode
    name; None for a character that is not a half, quadrant, sextant or full block."""
    if char == " ":
        return frozenset()
    name = unicodedata.name(char, "")
    every = {(x, y) for x in range(GRID_W) for y in range(GRID_H)}
    if name == "FULL BLOCK":
        return frozenset(every)
    if name in ("UPPER HALF BLOCK", "LOWER HALF BLOCK"):
        rows = _HALF_ROWS[name.split()[0]]
        return frozenset((x, y) for x, y in every if y in rows)
    if name in ("LEFT HALF BLOCK", "RIGHT HALF BLOCK"):
        column = 0 if name.startswith("LEFT") else 1
        return frozenset((x, y) for x, y in every if x == column)
    if name.startswith("QUADRANT "):
        parts = name.removeprefix("QUADRANT ").split(" AND ")
        return frozenset().union(*(_QUADRANTS[part] for part in parts))
    if match := re.fullmatch(r"BLOCK SEXTANT-([1-6]+)", name):
        covered: set[tuple[int, int]] = set()
        for digit in match[1]:
            n = int(digit) - 1  # sextants count 1-6 in reading order: two a row, three rows
            x, row = n % 2, n // 2
            covered |= {(x, 2 * row), (x, 2 * row + 1)}
        return frozenset(covered)
    return None


@dataclass(frozen=True, slots=True)
class Cell:
    char: str
    fg: str | None
    bg: str | None


def _hex(color: Any) -> str | None:
    if color is None or color.triplet is None:
        return None
    return str(color.triplet.hex)


def screen_cells(app: Any) -> list[list[Cell]]:
    """The app's current screen as cells: what its compositor hands the terminal."""
    rows: list[list[Cell]] = []
    for strip in app.screen._compositor.render_strips():
        row: list[Cell] = []
        for segment in strip:
            if segment.control:
                continue
            style = segment.style
            fg = _hex(style.color) if style else None
            bg = _hex(style.bgcolor) if style else None
            if style is not None and style.reverse:
                fg, bg = bg, fg
            row.extend(Cell(char, fg, bg) for char in segment.text)
        rows.append(row)
    return rows


def text_cells(lines: list[str], fg: str | None, bg: str | None) -> list[list[Cell]]:
    """Plain strings as cells of one colour pair."""
    return [[Cell(char, fg, bg) for char in line] for line in lines]


def _luma(color: str | None, default: str) -> int:
    value = (color or default).lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return round(0.299 * r + 0.587 * g + 0.114 * b)


def paint(cells: list[list[Cell]]) -> Image.Image:
    """Grey-scale pixels of ``cells``: blocks as geometry, other characters as a blot of ink
    in the middle of the cell (text, to a camera)."""
    height, width = len(cells), max(map(len, cells))
    image = Image.new("L", (width * CELL_W, height * CELL_H))
    sub_w, sub_h = CELL_W // GRID_W, CELL_H // GRID_H
    for y, row in enumerate(cells):
        for x, cell in enumerate(row):
            left, top = x * CELL_W, y * CELL_H
            fg, bg = _luma(cell.fg, THEME_FG), _luma(cell.bg, THEME_BG)
            image.paste(bg, (left, top, left + CELL_W, top + CELL_H))
            covered = ink(cell.char)
            if covered is None:
                image.paste(fg, (left + 3, top + 7, left + CELL_W - 3, top + CELL_H - 6))
                continue
            for gx, gy in covered:
                box = (left + gx * sub_w, top + gy * sub_h, left + (gx + 1) * sub_w, top + (gy + 1) * sub_h)
                image.paste(fg, box)
    return image
