"""QR rendering: every output form must scan back to the exact payload.

Decoding uses zxing-cpp with ``try_invert=False`` so a dark/light swap fails the test
instead of being silently corrected by the decoder.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from itertools import pairwise

import cairosvg
import pytest
import zxingcpp
from PIL import Image
from rich.console import Console
from rich.style import Style
from rich.text import Text
from terminal_paint import CELL_H, CELL_W, GRID_H, Cell, ink, paint

from watui import qr
from watui.qr import HALF, QUADRANT, SEXTANT, BlockMode
from watui.widgets.qr_view import block_text, half_block_text

MODULE_PX = 6


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode("ascii")


def whatsapp_payload() -> str:
    """Shaped like whatsmeow's: ref, noise key, identity key, adv secret, platform flag."""
    return f"2@{_b64(66)},{_b64(32)},{_b64(32)},{_b64(32)},1"


PAYLOADS = [
    whatsapp_payload(),
    "https://wa.me/settings/linked_devices#" + whatsapp_payload(),
    "x",
]


def decode(image: Image.Image) -> list[str]:
    results = zxingcpp.read_barcodes(image, try_invert=False)
    assert all("QR" in str(r.format) for r in results)
    return [r.text for r in results]


def text_cells(text: Text) -> list[list[tuple[str, Style | None]]]:
    """Each line of ``text`` as ``(character, style)`` per cell, styles read from the spans."""
    cells: list[list[tuple[str, Style | None]]] = []
    for line in text.split("\n", allow_blank=True):
        styles: list[Style | None] = [None] * len(line.plain)
        for span in line.spans:
            style = span.style if isinstance(span.style, Style) else Style.parse(span.style)
            for i in range(span.start, span.end):
                assert styles[i] is None, "overlapping spans: the cell's colour is ambiguous"
                styles[i] = style
        cells.append(list(zip(line.plain, styles, strict=True)))
    return cells


def hex_or_none(style: Style | None, attr: str) -> str | None:
    color = getattr(style, attr) if style is not None else None
    if color is None or color.triplet is None:
        return None
    return str(color.triplet.hex)


def draw_text(text: Text) -> tuple[list[list[bool]], Image.Image]:
    """Paint the half-block Text as a terminal would: fg = top pixel, bg = bottom pixel."""
    cells = text_cells(text)
    rows: list[list[bool]] = []
    for line in cells:
        top: list[bool] = []
        bottom: list[bool] = []
        for char, style in line:
            assert char == qr.HALF_BLOCK
            fg, bg = hex_or_none(style, "color"), hex_or_none(style, "bgcolor")
            assert fg in (qr.DARK, qr.LIGHT), f"cell without explicit fg: {style!r}"
            assert bg in (qr.DARK, qr.LIGHT), f"cell without explicit bg: {style!r}"
            top.append(fg == qr.DARK)
            bottom.append(bg == qr.DARK)
        rows += [top, bottom]
    height, width = len(rows), len(rows[0])
    image = Image.new("L", (width, height))
    image.putdata([0 if dark else 255 for row in rows for dark in row])
    image = image.resize((width * MODULE_PX, height * MODULE_PX), Image.Resampling.NEAREST)
    return rows, image


@pytest.mark.parametrize("payload", PAYLOADS)
def test_png_decodes_to_payload(payload: str) -> None:
    image = Image.open(io.BytesIO(qr.png_bytes(payload)))
    assert image.format == "PNG"
    size = len(qr.qr_matrix(payload)) * 8
    assert image.size == (size, size)
    assert decode(image) == [payload]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_half_block_text_decodes_to_payload(payload: str) -> None:
    text = half_block_text(payload)
    matrix = qr.qr_matrix(payload)
    rows, image = draw_text(text)

    # The drawing is exactly the matrix, plus one light padding row (sizes are always odd).
    assert len(matrix) % 2 == 1
    assert rows[: len(matrix)] == matrix
    assert rows[len(matrix) :] == [[False] * len(matrix)]
    assert decode(image) == [payload]


def test_half_block_text_shape_and_spans() -> None:
    payload = PAYLOADS[0]
    text = half_block_text(payload)
    columns, lines = qr.terminal_size(payload)
    plain_lines = text.plain.split("\n")
    assert len(plain_lines) == lines
    assert {len(line) for line in plain_lines} == {columns}
    assert not text.plain.endswith("\n")
    assert text.no_wrap, "a wrapped QR code does not scan"

    # Runs of equal cells share one span; anything else would be wasted render work.
    for line in text.split("\n"):
        spans = sorted(line.spans, key=lambda s: s.start)
        for left, right in pairwise(spans):
            assert not (left.end == right.start and left.style == right.style)
    runs = sum(1 + sum(a != b for a, b in pairwise(line)) for line in qr.half_block_cells(payload))
    assert len(text.spans) == runs
    # The top quiet zone (4 light rows = 2 lines) is one span per line.
    assert [len(line.spans) for line in text.split("\n")[:2]] == [1, 1]


def test_half_block_cells_match_text() -> None:
    payload = PAYLOADS[1]
    cells = qr.half_block_cells(payload)
    for line_cells, line_text in zip(cells, text_cells(half_block_text(payload)), strict=True):
        for (top, bottom), (_, style) in zip(line_cells, line_text, strict=True):
            assert hex_or_none(style, "color") == (qr.DARK if top else qr.LIGHT)
            assert hex_or_none(style, "bgcolor") == (qr.DARK if bottom else qr.LIGHT)


def sub_blocks(pattern: int, mode: BlockMode) -> frozenset[tuple[int, int]]:
    """The 2×6 sub-blocks of a cell (``terminal_paint``'s grid) that ``pattern``'s dark modules
    cover: bit ``i`` is module ``i`` of the cell in reading order."""
    tall = GRID_H // mode.down
    covered = set()
    for i in range(mode.across * mode.down):
        if pattern >> i & 1:
            x, y = i % mode.across, i // mode.across
            covered |= {(x, y * tall + dy) for dy in range(tall)}
    return frozenset(covered)


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
def test_every_pattern_has_the_glyph_that_inks_exactly_its_dark_modules(mode: BlockMode) -> None:
    """All 16 quadrant and 64 sextant patterns, against what Unicode names each character."""
    patterns = 2 ** (mode.across * mode.down)
    assert len(mode.glyphs) == patterns
    for pattern in range(patterns):
        glyph = mode.glyphs[pattern]
        assert ink(glyph) == sub_blocks(pattern, mode), (pattern, glyph, f"U+{ord(glyph):04X}")


def test_the_glyph_tables_use_the_block_characters() -> None:
    assert qr.QUADRANT_GLYPHS == " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"
    sextants = qr.SEXTANT_GLYPHS
    assert (sextants[0], sextants[0b010101], sextants[0b101010], sextants[0b111111]) == (" ", "▌", "▐", "█")
    assert sorted(c for c in sextants if ord(c) >= 0x1FB00) == [chr(c) for c in range(0x1FB00, 0x1FB3C)]
    assert (sextants[1], sextants[0b111110]) == ("\U0001FB00", "\U0001FB3B")


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
def test_blocks_draws_every_pattern_where_it_belongs(mode: BlockMode) -> None:
    """A matrix with every pattern, one per cell, drawn and painted back to modules."""
    patterns = range(2 ** (mode.across * mode.down))
    rows = [[False] * (mode.across * len(patterns)) for _ in range(mode.down)]
    for cell, pattern in enumerate(patterns):
        for i in range(mode.across * mode.down):
            rows[i // mode.across][cell * mode.across + i % mode.across] = bool(pattern >> i & 1)
    lines = qr.blocks(rows, mode)
    assert len(lines) == 1 and len(lines[0]) == len(patterns)
    assert painted_modules([[Cell(c, qr.DARK, qr.LIGHT) for c in lines[0]]], mode) == rows


def painted_modules(cells: list[list[Cell]], mode: BlockMode) -> list[list[bool]]:
    """Paint ``cells`` as a terminal does and read each module back from its middle pixel."""
    image = paint(cells)
    width, height = image.size
    step_x, step_y = CELL_W // mode.across, CELL_H // mode.down
    return [[image.getpixel((x + step_x // 2, y + step_y // 2)) == 0 for x in range(0, width, step_x)]
            for y in range(0, height, step_y)]


def styled_cells(text: Text) -> list[list[Cell]]:
    """A Text's cells with the colours its spans give them (None where a span gives none)."""
    return [[Cell(char, hex_or_none(style, "color"), hex_or_none(style, "bgcolor")) for char, style in line]
            for line in text_cells(text)]


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_block_text_decodes_to_payload(payload: str, mode: BlockMode) -> None:
    text = block_text(payload, mode)
    cells = styled_cells(text)
    assert {(cell.fg, cell.bg) for line in cells for cell in line} == {(qr.DARK, qr.LIGHT)}, "ink on paper"
    matrix = qr.qr_matrix(payload)
    size = len(matrix)
    modules = painted_modules(cells, mode)
    # Exactly the matrix, padded with light modules to whole cells (right and bottom only).
    assert [row[:size] for row in modules[:size]] == matrix
    assert not any(any(row[size:]) for row in modules) and not any(any(row) for row in modules[size:])
    columns, lines = qr.terminal_size(payload, mode)
    assert (len(modules[0]), len(modules)) == (columns * mode.across, lines * mode.down)
    assert decode(paint(cells)) == [payload]


def test_block_text_is_one_span_a_line_and_cannot_be_poisoned() -> None:
    payload = PAYLOADS[0]
    text = block_text(payload, SEXTANT)
    assert text.no_wrap, "a wrapped QR code does not scan"
    assert text.plain.split("\n") == list(qr.block_lines(payload, SEXTANT))
    assert len(text.spans) == len(qr.block_lines(payload, SEXTANT))
    text.stylize("bold")
    assert all("bold" not in str(span.style) for span in block_text(payload, SEXTANT).spans)
    assert block_text(payload).plain == half_block_text(payload).plain, "half blocks are the default"
    assert block_text(payload, HALF).spans == half_block_text(payload).spans


def test_half_blocks_have_no_ink_glyphs() -> None:
    with pytest.raises(ValueError, match="two colours"):
        qr.block_lines("x", HALF)


def test_terminal_size_realistic_payload() -> None:
    # A ~230-character pairing payload at level L is a version 9 code (53 modules).
    columns, lines = qr.terminal_size(PAYLOADS[0])
    assert (columns, lines) == (53 + 8, (53 + 8 + 1) // 2)
    assert qr.terminal_size("x") == (21 + 8, (21 + 8 + 1) // 2)
    # Quadrants halve the columns; sextants also take a third of the rows a line.
    assert qr.terminal_size(PAYLOADS[0], QUADRANT) == (31, 31)
    assert qr.terminal_size(PAYLOADS[0], SEXTANT) == (31, 21)
    # WhatsApp's own (version 10, 57 modules): 33×22 cells in sextants.
    assert qr.terminal_size("x" * 250, SEXTANT) == (33, 22)
    assert [qr.terminal_size("x" * 250, mode) for mode in qr.BLOCK_MODES] == [(65, 33), (33, 33), (33, 22)]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_quiet_zone_is_light(payload: str) -> None:
    matrix = qr.qr_matrix(payload)
    q = qr.QUIET_ZONE
    assert q == 4
    size = len(matrix)
    assert all(len(row) == size for row in matrix)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if x < q or y < q or x >= size - q or y >= size - q:
                assert not dark, (x, y)
    # The finder pattern starts right inside the quiet zone.
    assert matrix[q][q] and matrix[q][size - q - 1] and matrix[size - q - 1][q]

    # And the PNG keeps it: 4 modules of white on each side.
    scale = 3
    image = Image.open(io.BytesIO(qr.png_bytes(payload, scale=scale))).convert("L")
    border = q * scale
    width = image.width
    pixels = image.load()
    assert pixels is not None
    for i in range(width):
        for j in range(border):
            for x, y in ((i, j), (j, i), (i, width - 1 - j), (width - 1 - j, i)):
                assert pixels[x, y] == 255, (x, y)
    assert pixels[border, border] == 0


def test_quiet_zone_parameter() -> None:
    assert len(qr.qr_matrix("x", quiet_zone=0)) == 21
    assert len(qr.qr_matrix("x", quiet_zone=2)) == 25
    assert qr.qr_matrix("x", quiet_zone=0)[0][0] is True
    with pytest.raises(ValueError):
        qr.qr_matrix("x", quiet_zone=-1)


def test_data_url_format_and_cache() -> None:
    payload = whatsapp_payload()
    before = qr.png_data_url.cache_info()
    url = qr.png_data_url(payload)
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    raw = base64.b64decode(url[len(prefix) :], validate=True)
    assert raw == qr.png_bytes(payload)
    assert decode(Image.open(io.BytesIO(raw))) == [payload]

    again = qr.png_data_url(payload)
    assert again is url
    after = qr.png_data_url.cache_info()
    assert after.hits == before.hits + 1
    assert after.misses == before.misses + 1
    assert after.maxsize is not None and after.maxsize >= 256


def test_cached_results_cannot_be_poisoned() -> None:
    payload = whatsapp_payload()
    matrix = qr.qr_matrix(payload)
    matrix[0][0] = True
    matrix.pop()
    assert qr.qr_matrix(payload)[0][0] is False
    assert len(qr.qr_matrix(payload)) == len(matrix) + 1

    text = half_block_text(payload)
    plain = text.plain
    text.append("oops", "red")
    text.stylize("bold")
    fresh = half_block_text(payload)
    assert fresh.plain == plain
    assert all("bold" not in str(span.style) for span in fresh.spans)


def test_different_payloads_differ() -> None:
    a, b = whatsapp_payload(), whatsapp_payload()
    assert qr.qr_matrix(a) != qr.qr_matrix(b)
    assert qr.png_data_url(a) != qr.png_data_url(b)


def test_too_long_payload_and_bad_scale() -> None:
    with pytest.raises(ValueError, match="too long"):
        qr.qr_matrix("x" * 5000)
    with pytest.raises(ValueError):
        qr.png_bytes("x", scale=0)


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_rich_svg_screenshot_scans(payload: str) -> None:
    """What a phone sees: rich renders the Text, cairosvg rasterises it, zxing reads it."""
    columns, _ = qr.terminal_size(payload)
    console = Console(
        record=True,
        width=columns,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
    )
    console.print(half_block_text(payload))
    svg = console.export_svg(title="qr")
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=1.5)
    assert isinstance(png, bytes)
    assert decode(Image.open(io.BytesIO(png))) == [payload]


def test_does_not_import_textual() -> None:
    code = "import sys, watui.qr; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_prerender_draws_the_png_in_another_process_before_anyone_asks() -> None:
    """The server's manager calls prerender before a ``qr`` event exists: the PNG is then a
    cache hit for every SSE client and webhook, not tens of ms on the event loop."""
    payload = "2@" + _b64(48) + "," + _b64(32) + "," + _b64(32) + "," + _b64(32) + ",prerender"
    await qr.prerender(payload)
    drawn = qr._prerendered[(payload, 8)]
    assert qr.png_bytes(payload) is drawn, "png_bytes takes the drawn PNG as it is"
    assert drawn == qr.draw_png(payload, 8)
    assert isinstance(qr._drawer(), qr.concurrent.futures.ProcessPoolExecutor)
    assert qr._drawer().submit(os.getpid).result(10) != os.getpid(), "drawn in another process"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(drawn)))
    assert [d.text for d in decoded] == [payload]
    await qr.prerender("x" * 5000)  # too long for any QR code: left for the callers to report
    assert ("x" * 5000, 8) not in qr._prerendered
