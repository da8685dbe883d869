"""QR drawing per rotation (issue 18): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_qr [--rotations 200]

Every rotation brings a fresh payload, so the console draws a code it has never seen. The
payloads are shaped like WhatsApp's (the simulated engine's): a version 10 code, 65×65 modules
with the quiet zone. Per terminal size, in the grain the QR screen picks there (half blocks at
120×40, sextants at 80×24), and quadrants (a tall narrow terminal) for completeness:

1. text build: ``block_text`` for the fresh payload, its module matrix already made (the
   matrix is the same for every grain, so this is the part the grain changes);
2. widget render: ``QrView.show`` plus rendering the widget's lines, in a headless app of
   that size (what one frame spends on the code);
3. both against half blocks, as ratios measured in the same run.

The matrix itself (zxing-cpp's encoding and mask choice, shared by every grain and by the
server's PNG) is printed alongside for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import statistics
import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.geometry import Region

from bench._util import Figure, percentile, print_table
from watui import qr
from watui.qr import HALF, QUADRANT, SEXTANT, BlockMode
from watui.widgets.qr_view import QrView, block_text

SIZES: list[tuple[str, BlockMode]] = [("120x40", HALF), ("80x24", SEXTANT), ("40x40", QUADRANT)]


def payloads(count: int) -> list[str]:
    """Fresh pairing payloads, shaped like the simulated engine's (and WhatsApp's)."""

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode("ascii")

    return [f"https://wa.me/settings/linked_devices#2@{b64(45)},{b64(32)},{b64(32)},{b64(32)},1"
            for _ in range(count)]


def timed_ms(action: Callable[[str], object], items: list[str]) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        action(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


class OneCode(App[None]):
    def compose(self) -> ComposeResult:
        yield QrView(id="code")


async def render_ms(mode: BlockMode, items: list[str], size: tuple[int, int]) -> list[float]:
    """``show`` plus the widget's rendered lines, per payload, in a headless app of ``size``."""
    app = OneCode()
    times: list[float] = []
    async with app.run_test(size=size) as pilot:
        view = app.query_one(QrView)
        view.show(items[0], mode)
        await pilot.pause()
        for payload in items:
            columns, lines = qr.terminal_size(payload, mode)
            started = time.perf_counter()
            view.show(payload, mode)
            strips = view.render_lines(Region(0, 0, columns, lines))
            times.append((time.perf_counter() - started) * 1000)
            assert len(strips) == lines and strips[0].cell_length == columns
        await pilot.pause()
    return times


def figure(name: str, times: list[float], note: str = "") -> Figure:
    p95 = percentile(times, 95)
    return Figure(name, statistics.median(times), "ms", note=f"median; p95 {p95:.2f} ms{note}", digits=2)


async def run(rotations: int) -> list[Figure]:
    items = payloads(rotations)
    matrix = timed_ms(qr.qr_matrix, items)  # and the matrix cache is warm for what follows
    assert {len(qr.qr_matrix(p)) for p in items} == {65}, "WhatsApp's size: version 10, quiet zone 4"
    figures: list[Figure] = []
    builds: dict[BlockMode, float] = {}
    renders: dict[BlockMode, float] = {}
    for size, mode in SIZES:
        # The Text caches are per (payload, grain), so every payload is fresh to every grain.
        build = timed_ms(functools.partial(block_text, mode=mode), items)
        shown = payloads(rotations)
        for payload in shown:
            qr.qr_matrix(payload)
        width, height = (int(n) for n in size.split("x"))
        render = await render_ms(mode, shown, (width, height))
        builds[mode], renders[mode] = statistics.median(build), statistics.median(render)
        columns, lines = qr.terminal_size(items[0], mode)
        figures.append(figure(f"{size}: {mode.name}, text build", build, f"; {columns}x{lines} cells"))
        figures.append(figure(f"{size}: {mode.name}, show + widget render", render))
    for size, mode in SIZES[1:]:
        figures.append(Figure(f"{size}: {mode.name} / half blocks, text build", builds[mode] / builds[HALF], "x",
                              digits=2, note="same run"))
        figures.append(Figure(f"{size}: {mode.name} / half blocks, widget render", renders[mode] / renders[HALF],
                              "x", digits=2, note="same run"))
    figures.append(figure("matrix (zxing-cpp, shared by every grain)", matrix, "; not in the figures above"))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rotations", type=int, default=200)
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.rotations))
    print_table(f"QR drawing per rotation: {args.rotations} fresh WhatsApp-sized payloads (65x65 modules)",
                figures)


if __name__ == "__main__":
    main()
