"""User text on screen: never markup, never terminal escapes, measured in cells.

Names, descriptions, messages, reasons and push names come from API callers and from phones,
not from the admin. Everything the console draws of them goes through :func:`clean` (control
characters shown as visible symbols, emoji joiners and presentation selectors dropped so the
terminal and Rich agree on the width) and, where it becomes a renderable, :func:`plain` (a
``Text``, which Textual never parses as markup).
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.text import Text

_INVISIBLE = {0x200D, 0xFE0E, 0xFE0F}
"""Zero-width joiner and the text/emoji presentation selectors: terminals disagree on the
width they give a joined or re-presented emoji (``☎️`` is one cell to Rich, two to most
terminals), so they are dropped and each emoji is drawn on its own."""


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟: the Unicode control pictures
    if code == 0x7F:
        return "␡"
    if 0x80 <= code < 0xA0 or code in (0x2028, 0x2029):
        return "�"  # C1 controls (the 8-bit ESC/CSI) and line separators
    return char


_TABLE: dict[int, str | None] = {
    code: _visible(chr(code)) for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
}
_TABLE.update(dict.fromkeys(_INVISIBLE))


def clean(text: str | None) -> str:
    """``text`` safe to draw on one line: no escape can reach the terminal, the width is known."""
    if not text:
        return ""
    return text.translate(_TABLE)


def one_line(text: str | None) -> str:
    """Like :func:`clean`, with runs of whitespace (line breaks too) folded into one space."""
    return clean(" ".join((text or "").split()))


def plain(text: str | None, style: str = "") -> Text:
    """User text as a renderable that is never parsed as markup."""
    return Text(clean(text), style=style, end="")


def fit(text: str, width: int, right: bool = False) -> str:
    """Pad or cut ``text`` to exactly ``width`` terminal cells (an ellipsis marks a cut).

    Wide characters (CJK, emoji) take two cells; one that would straddle the edge is
    replaced by padding, so the column after it never moves.
    """
    if width <= 0:
        return ""
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - size)
    return pad + text if right else text + pad
