"""Console benchmarks (issue 3): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_console [--sessions 10000] [--burst 1000] [--mode both]

The Textual app runs headless at 120x40 holding N sessions, in two variants measured in the
same run (``--mode inline|attach|both``):

- inline: over a real manager in the same process (simulated engine, fake clock so nothing
  moves unless the benchmark says so), as ``watui`` runs;
- attach: over a real ``watui serve`` in another process (``bench/console_server.py``, the
  simulated engine slow to connect so nothing moves on its own), through the HTTP API and the
  ``/v1/events`` stream, as ``watui attach`` runs.

Each variant measures:

1. first paint: from starting the app to the sessions table drawn with its rows;
2. a burst of status changes: ``start`` on B stopped sessions at once (each becomes
   ``initializing``: one ``status`` event), timed until the last one is on screen;
3. the longest frame while the burst is applied (one frame = one screen update: layout plus
   rendering the dirty widgets), and the event-loop lag a keystroke would have felt;
4. filter keystroke to repaint: one key typed into the filter box, timed until the filtered
   table has been drawn (median of several keys).

Goals (from the issue): first paint <= 1 s, burst visible <= 1 s, no frame over 50 ms,
filter <= 100 ms; in attach mode the same goals (issue 10).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._util import Figure, LagProbe, percentile, print_table
from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import Status
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate
from watui.screens.main import MainScreen
from watui.widgets.sessions_table import SessionsTable


class FrameRecorder:
    """Times every screen update and remembers when the table last drew a line."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float]] = []  # (start, duration)
        self.last_table_paint = 0.0
        self.table_paints: list[float] = []
        self._installed: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from textual.screen import Screen

        recorder = self
        original_update = Screen._on_timer_update

        def timed_update(screen: Screen[Any]) -> None:
            start = time.perf_counter()
            original_update(screen)
            recorder.frames.append((start, time.perf_counter() - start))

        original_render = SessionsTable.render_line

        def recorded_render(table: SessionsTable, y: int) -> Any:
            now = time.perf_counter()
            if y == 1:  # once per paint of the whole table (line 0 is the header)
                recorder.table_paints.append(now)
            recorder.last_table_paint = now
            return original_render(table, y)

        Screen._on_timer_update = timed_update  # type: ignore[method-assign,assignment]
        SessionsTable.render_line = recorded_render  # type: ignore[method-assign,assignment]
        self._installed = [(Screen, "_on_timer_update", original_update),
                           (SessionsTable, "render_line", original_render)]

    def uninstall(self) -> None:
        for owner, name, original in self._installed:
            setattr(owner, name, original)

    def first_paint_after(self, since: float) -> float | None:
        return next((t for t in self.table_paints if t > since), None)

    def longest_since(self, since: float) -> float:
        return max((d for s, d in self.frames if s >= since), default=0.0)


async def wait_for(condition: Callable[[], bool], pilot: Any, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def wait_painted_after(recorder: FrameRecorder, since: float, pilot: Any) -> float:
    """When the table first drew after ``since`` (the frame with the new rows in it)."""
    await wait_for(lambda: recorder.first_paint_after(since) is not None, pilot)
    painted = recorder.first_paint_after(since)
    assert painted is not None
    return painted


async def populate(manager: SessionManager, count: int) -> float:
    service = manager.service(Caller.local_admin())
    start = time.perf_counter()
    chunk = 500
    for base in range(0, count, chunk):
        await asyncio.gather(*(
            service.create_session(SessionCreate.model_validate({"name": f"ses-{n:05d}", "start": False}))
            for n in range(base, min(count, base + chunk))
        ))
    return time.perf_counter() - start


def bench_settings(data: Path, args: argparse.Namespace) -> Settings:
    return Settings(data_dir=data, engine="simulated", sqlite_synchronous="OFF",
                    subscriber_queue_size=max(1024, args.burst * 4))


Burst = Callable[[list[str]], Awaitable[float]]
"""Starts the given sessions; returns when the starts were done (``perf_counter`` time)."""


@contextlib.asynccontextmanager
async def inline_app(args: argparse.Namespace) -> AsyncIterator[tuple[WatuiApp, Burst]]:
    """The console over a manager in this process, as ``watui`` runs it."""
    data = Path(tempfile.mkdtemp(prefix="watui-bench-console-"))
    clock = FakeClock()
    engine = SimulatedEngine(clock=clock, seed=1, connect_latency=1.0, persist_auth=False)
    manager = await SessionManager.open(bench_settings(data, args), engine=engine, clock=clock)
    create_s = await populate(manager, args.sessions)
    print(f"created {args.sessions:,} sessions in {create_s:.1f} s (setup, not a figure)")
    app = WatuiApp(manager, clock=clock, cursor_blink=False, freeze_heap=True)  # as run_console does

    async def burst(ids: list[str]) -> float:
        await asyncio.gather(*(app.service.start(i) for i in ids))
        return time.perf_counter()

    try:
        yield app, burst
    finally:
        await manager.aclose()


@contextlib.asynccontextmanager
async def attached_app(args: argparse.Namespace) -> AsyncIterator[tuple[WatuiApp, Burst]]:
    """The console over a ``watui serve`` in another process, as ``watui attach`` runs it."""
    from watui.remote import RemoteService

    data = Path(tempfile.mkdtemp(prefix="watui-bench-console-attach-"))
    manager = await SessionManager.open(bench_settings(data, args), engine=SimulatedEngine(seed=1))
    create_s = await populate(manager, args.sessions)
    await manager.aclose()
    print(f"created {args.sessions:,} sessions in {create_s:.1f} s (setup, not a figure)")
    server = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is measured
        [sys.executable, "-m", "bench.console_server", "--data-dir", str(data), "--port", "0",
         "--queue", str(max(1024, args.burst * 4)), "--burst", str(args.burst)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []

    def read_output() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)

    threading.Thread(target=read_output, daemon=True).start()
    try:
        url = await _wait_line(lines, re.compile(r"watui serving on (http://\S+)"), server)
        remote = await RemoteService.open(url, (data / "admin.key").read_text().strip())
        app = WatuiApp(service=remote, link=remote.link, cursor_blink=False, freeze_heap=True)

        async def burst(ids: list[str]) -> float:
            """The server starts the same sessions in its own process (SIGUSR1)."""
            start = time.perf_counter()
            seen = len(lines)
            os.kill(server.pid, signal.SIGUSR1)
            took = await _wait_line(lines, re.compile(r"burst done in ([0-9.]+) ms"), server, seen)
            return start + float(took) / 1000

        try:
            yield app, burst
        finally:
            await remote.aclose()
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)


async def _wait_line(lines: list[str], pattern: re.Pattern[str], server: subprocess.Popen[str],
                     start: int = 0) -> str:
    while True:
        for line in lines[start:]:
            match = pattern.search(line)
            if match:
                return match.group(1)
        if server.poll() is not None:
            raise RuntimeError("the benchmark's server ended:\n" + "".join(lines))
        await asyncio.sleep(0.001)


async def run(args: argparse.Namespace, attach: bool = False) -> list[Figure]:
    async with (attached_app if attach else inline_app)(args) as (app, burst):
        return await measure(app, burst, args)


async def measure(app: WatuiApp, burst: Burst, args: argparse.Namespace) -> list[Figure]:
    recorder = FrameRecorder()
    recorder.install()
    figures: list[Figure] = []
    try:
        app.animation_level = "none"
        t0 = time.perf_counter()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: isinstance(app.screen, MainScreen)
                           and len(app.screen.query_one(SessionsTable).rows) == args.sessions, pilot)
            painted = await wait_painted_after(recorder, t0, pilot)
            figures.append(Figure("first paint, 10k table" if args.sessions == 10_000 else
                                  f"first paint, {args.sessions:,} sessions",
                                  (painted - t0) * 1000, "ms", 1000, note="app start -> table drawn"))
            await pilot.pause()

            # -- burst ------------------------------------------------------------------
            ids = sorted(app.state.sessions)[: args.burst]
            attached = app.manager is None
            probe = LagProbe(0.005)
            probe.start()
            burst_start = time.perf_counter()
            calls_done = await burst(ids)

            def burst_applied() -> bool:
                state = app.state.sessions
                return all(state[i].status == Status.INITIALIZING for i in ids)

            await wait_for(burst_applied, pilot)
            applied = time.perf_counter()
            shown = await wait_painted_after(recorder, applied, pilot)
            await probe.stop()
            lag = [s * 1000 for s in probe.samples]
            figures += [
                Figure(f"burst of {args.burst:,} status changes visible", (shown - burst_start) * 1000, "ms", 1000,
                       note=f"{'the server' if attached else 'service calls'} took "
                            f"{(calls_done - burst_start) * 1000:,.0f} ms of it"),
                Figure("  of which: console catch-up after the last call", (shown - calls_done) * 1000, "ms",
                       note="events -> coalesced refresh -> frame"),
                Figure("longest frame during the burst", recorder.longest_since(burst_start) * 1000, "ms", 50),
                Figure("event-loop lag during the burst, p99", percentile(lag, 99), "ms",
                       note=f"max {max(lag, default=0):.0f} ms "
                            + ("(the console's loop; the server is another process)" if attached
                               else "(manager and console share the loop)")),
                Figure("refreshes for the burst", app.flushes, "", digits=0,
                       note="coalesced batches (one repaint each)"),
            ]

            # -- filter -----------------------------------------------------------------
            main = app.screen
            assert isinstance(main, MainScreen)
            await pilot.press("slash")
            await pilot.pause()
            timings: list[float] = []
            frames_before = len(recorder.frames)
            for key in "ses-00123":
                typed = main.query_text + key
                start = time.perf_counter()
                await pilot.press(key)
                await wait_for(lambda typed=typed: main.query_text == typed, pilot)  # type: ignore[misc]
                painted = await wait_painted_after(recorder, start, pilot)
                timings.append(painted - start)
            filter_frames = [d for _, d in recorder.frames[frames_before:]]
            if args.verbose:
                print("filter frames (ms):", [round(d * 1000) for d in filter_frames])
            figures += [
                Figure("filter keystroke -> repaint, median", statistics.median(timings) * 1000, "ms", 100,
                       note=f"max {max(timings) * 1000:.0f} ms over {len(timings)} keys, 10k rows filtered each"),
                Figure("longest frame while filtering", max(filter_frames, default=0) * 1000, "ms", 50),
            ]
            table = main.query_one(SessionsTable)
            assert [s.name for s in table.rows] == ["ses-00123"], table.rows[:3]
    finally:
        recorder.uninstall()
    return figures


COMPARED = ("first paint", "burst of", "longest frame during the burst", "filter keystroke")


def comparison(inline: list[Figure], attach: list[Figure]) -> list[Figure]:
    """Attach against inline, figure by figure, as ratios (the baseline is this run's inline)."""
    out = []
    for mine in attach:
        base = next((f for f in inline if f.name == mine.name), None)
        if base is None or not mine.name.startswith(COMPARED) or not base.value:
            continue
        out.append(Figure(f"{mine.name}: attach / inline", mine.value / base.value, "x", digits=2,
                          note=f"{base.value:,.0f} {base.unit} inline, {mine.value:,.0f} {mine.unit} attached"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--verbose", action="store_true", help="print every frame time while filtering")
    parser.add_argument("--mode", choices=["inline", "attach", "both"], default="both")
    args = parser.parse_args(argv)
    title = f"{args.sessions:,} sessions, burst of {args.burst:,}, headless 120x40"
    results: dict[str, list[Figure]] = {}
    for mode in ("inline", "attach"):
        if args.mode in (mode, "both"):
            results[mode] = asyncio.run(run(args, attach=mode == "attach"))
            where = "in-process manager" if mode == "inline" else "attached to watui serve over HTTP + SSE"
            print_table(f"Console ({where}): {title}", results[mode])
    if len(results) == 2:
        print_table(f"Console, attach vs inline (same run): {title}",
                    comparison(results["inline"], results["attach"]))


if __name__ == "__main__":
    main()
