"""QR codes a server sustains (issue 19): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_qr_server [--sessions 1000] [--ttl 1] [--seconds 8]
                                              [--before 4ac9585]

Before this change the server drew every code's PNG (qrcode's automatic mask search, then
Pillow) in one helper process *before* the ``qr`` event was made, so it emitted only as many
codes as that process drew. Now the code's text is the event and a PNG is drawn only when
someone needs one (zxing-cpp's encoder, a PNG written by hand), once per code, newest first.

1. **Drawing, in this process**: time per fresh WhatsApp-sized code, the old drawing against
   the new; and what one drawing costs the process that asks for it (its CPU, i.e. the GIL its
   event loop needs) when drawn in a thread, in the drawing process one by one (the old
   ``prerender`` path), and in the drawing process in batches (the new queue under load).
2. **Servers**: a real ``watui serve`` (simulated engine) of the commit before this change
   (``--before``, extracted with ``git archive`` into a temporary directory) and of this tree,
   one after the other in the same run, each with ``--sessions`` sessions whose codes rotate
   every ``--ttl`` seconds (``--sessions``/``--ttl`` codes a second asked of the server), for
   ``--seconds`` each:

   a. nobody watching: ``qr`` events written a second (``watui_events_written_total``);
   b. one ``GET /v1/events`` subscriber: events written a second, ``qr`` frames it received a
      second, how many carried ``qr_data`` (the rest: codes superseded or expired before they
      were drawn), and their delay from the event's timestamp to the client;

   then SIGTERM, and how long the server takes to exit (capped at ``--stop-cap`` seconds).

   CPU is the server process's own and its children's (the SQLite writer, the drawing
   process): on a shared machine both are capped by what the others leave.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import qrcode
import qrcode.constants
import zxingcpp
from PIL import Image

from bench._util import Figure, Spawned, percentile, print_table, spawn_server
from watui import qr, qr_drawings

REPO = Path(__file__).resolve().parents[1]
BEFORE = "4ac9585"
"""The last commit that drew every code before its ``qr`` event was made."""
QR_WRITTEN = re.compile(r'^watui_events_written_total\{type="qr"\} ([0-9.e+]+)$', re.MULTILINE)
TIMESTAMP = re.compile(rb'"timestamp":"([^"]+)"')


def payloads(count: int) -> list[str]:
    """Fresh pairing payloads, shaped like the simulated engine's (and WhatsApp's)."""

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode("ascii")

    return [f"https://wa.me/settings/linked_devices#2@{b64(45)},{b64(32)},{b64(32)},{b64(32)},1"
            for _ in range(count)]


# ---------------------------------------------------------------------------- 1. drawing


def old_draw_png(payload: str) -> bytes:
    """The drawing the server had before: qrcode with its automatic mask, Pillow's resize and
    optimised save (what ``watui.qr.draw_png`` was at ``BEFORE``)."""
    code = qrcode.QRCode(version=None, error_correction=qrcode.constants.ERROR_CORRECT_L, border=4)
    code.add_data(payload)
    code.make(fit=True)
    rows = code.get_matrix()
    size = len(rows)
    image = Image.new("1", (size, size))
    image.putdata([0 if dark else 1 for row in rows for dark in row])
    image = image.resize((size * 8, size * 8), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def per_code_ms(draw: Callable[[str], bytes], items: list[str]) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        draw(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


def cpu_per_drawing_ms(run: Callable[[list[str]], None], count: int) -> float:
    """This process's CPU (every thread: what competes with an event loop for the GIL) per code."""
    items = payloads(count)
    started = time.process_time()
    run(items)
    return (time.process_time() - started) / count * 1000


def drawing_figures(codes: int) -> list[Figure]:
    old = per_code_ms(old_draw_png, payloads(max(20, codes // 8)))
    new = per_code_ms(qr.draw_png, payloads(codes))
    assert all(zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.draw_png(p))))[0].text == p for p in payloads(5))
    figures = [
        Figure("draw one code: before (qrcode, automatic mask + Pillow)", statistics.median(old), "ms", digits=2,
               note=f"median; p95 {percentile(old, 95):.2f} ms"),
        Figure("draw one code: after (zxing-cpp + PNG by hand)", statistics.median(new), "ms", digits=2,
               note=f"median; p95 {percentile(new, 95):.2f} ms"),
        Figure("draw one code: before / after", statistics.median(old) / statistics.median(new), "x", digits=1,
               note="same run"),
    ]

    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(old_draw_png, "warm").result()

    def one_by_one(items: list[str]) -> None:  # the old prerender: one round trip per code
        for item in items:
            pool.submit(old_draw_png, item).result()

    def queued(drawings: qr_drawings.Drawings) -> Callable[[list[str]], None]:
        def run(items: list[str]) -> None:  # a burst of needs, as a stream behind asks
            needs = [drawings.need(item) for item in items]
            for need in needs:
                need.result(60)
        return run

    in_thread = qr_drawings.Drawings()
    in_process = qr_drawings.Drawings()
    in_process.use_process()
    in_process.need("warm").result(60)
    try:
        costs = [
            ("before: drawing process, one round trip a code", cpu_per_drawing_ms(one_by_one, max(20, codes // 8))),
            ("after: in a thread (the console's way)", cpu_per_drawing_ms(queued(in_thread), codes)),
            ("after: drawing process, batches of up to 16", cpu_per_drawing_ms(queued(in_process), codes)),
        ]
    finally:
        pool.shutdown()
        in_process.close()
    figures += [Figure(f"asker's CPU per code, {name}", cost, "ms", digits=3) for name, cost in costs]
    return figures


# ---------------------------------------------------------------------------- 2. servers


@dataclass
class Watch:
    """One ``/v1/events`` client, counting what it reads."""

    frames: int = 0
    codes: int = 0
    drawn: int = 0
    delays: list[float] = field(default_factory=list)
    counting: bool = False
    last_id: int = 0
    out_of_order: int = 0


async def watch(host: str, port: int, key: str, out: Watch, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=2**22)
    writer.write(f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                 f"Authorization: Bearer {key}\r\n\r\n".encode())
    await writer.drain()
    if b" 200 " not in await reader.readline():
        raise RuntimeError("the stream was refused")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    pending = b""
    kind = b""
    try:
        while not stop.is_set():
            size_line = await reader.readline()
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            now = time.time()
            pending += chunk[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"id: "):
                    event_id = int(line[4:])
                    out.out_of_order += event_id <= out.last_id
                    out.last_id = event_id
                elif line.startswith(b"event: "):
                    kind = line[7:]
                elif line.startswith(b"data: ") and out.counting:
                    out.frames += 1
                    if kind == b"qr":
                        out.codes += 1
                        if b'"qr_data"' in line:
                            out.drawn += 1
                            stamp = TIMESTAMP.search(line)
                            if stamp:
                                out.delays.append(now - datetime.fromisoformat(stamp.group(1).decode()).timestamp())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def spawn_in(tree: Path, data_dir: Path, env: dict[str, str], timeout: float = 60) -> Spawned:
    """``watui serve`` of the code in ``tree`` (its ``watui`` package comes first on the path)."""
    return spawn_server(
        ["-m", "watui", "serve", "--engine", "simulated", "--port", "0", "--data-dir", str(data_dir)],
        cwd=tree, env={"PYTHONPATH": str(tree), **env}, timeout=timeout, start_new_session=True,
    )


def children_cpu_seconds(parent: int) -> float:
    """User + system CPU of ``parent``'s live child processes: the SQLite writer, and the drawing
    process once something was drawn."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def qr_written(client: httpx.AsyncClient) -> float:
    found = QR_WRITTEN.search((await client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def create_sessions(client: httpx.AsyncClient, count: int, deadline: float) -> int:
    made = 0
    names = iter(range(count))

    async def worker() -> None:
        nonlocal made
        for n in names:
            while time.monotonic() < deadline:
                response = await client.post("/v1/sessions", json={"name": f"qr-{n:05d}"})
                if response.status_code == 201:
                    made += 1
                    break
                await asyncio.sleep(float(response.headers.get("retry-after", "0.2")))

    await asyncio.gather(*(worker() for _ in range(16)))
    return made


@dataclass
class ServerRun:
    name: str
    created: int = 0
    create_s: float = 0.0
    idle_rate: float = 0.0
    idle_cpu: float = 0.0
    idle_children_cpu: float = 0.0
    watched_rate: float = 0.0
    watched_cpu: float = 0.0
    watched_children_cpu: float = 0.0
    watch: Watch = field(default_factory=Watch)
    window_s: float = 1.0
    stop_s: float = 0.0
    stop_killed: bool = False


async def run_server(name: str, tree: Path, sessions: int, ttl: float, seconds: float, stop_cap: float) -> ServerRun:
    out = ServerRun(name)
    with tempfile.TemporaryDirectory(prefix="watui-bench-qr-") as tmp:
        env = {"WATUI_QR_FIRST_TTL": str(ttl), "WATUI_QR_NEXT_TTL": str(ttl),
               "WATUI_QR_CODES_PER_ATTEMPT": "1000000", "WATUI_NODE_CAPACITY": str(2 * sessions),
               "WATUI_SQLITE_SYNCHRONOUS": "NORMAL", "WATUI_SSE_PING_INTERVAL": "15"}
        server = spawn_in(tree, Path(tmp) / "data", env)
        key = (Path(tmp) / "data" / "admin.key").read_text().strip()
        host, port = server.host_port
        try:
            async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"},
                                         timeout=120) as client:
                started = time.monotonic()
                out.created = await create_sessions(client, sessions, started + 120)
                out.create_s = time.monotonic() - started
                await asyncio.sleep(2)  # every session past its first code

                async def window() -> tuple[float, float, float]:
                    written, clock = await qr_written(client), time.monotonic()
                    cpu, drawing = server.cpu_seconds(), children_cpu_seconds(server.proc.pid)
                    await asyncio.sleep(seconds)
                    out.window_s = time.monotonic() - clock
                    return ((await qr_written(client) - written) / out.window_s,
                            (server.cpu_seconds() - cpu) / out.window_s * 100,
                            (children_cpu_seconds(server.proc.pid) - drawing) / out.window_s * 100)

                out.idle_rate, out.idle_cpu, out.idle_children_cpu = await window()
                stop = asyncio.Event()
                task = asyncio.create_task(watch(host, port, key, out.watch, stop))
                await asyncio.sleep(1)
                out.watch.counting = True
                out.watched_rate, out.watched_cpu, out.watched_children_cpu = await window()
                out.watch.counting = False
                stop.set()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(stop_cap)
            except subprocess.TimeoutExpired:
                out.stop_killed = True
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait()
            out.stop_s = time.monotonic() - started
    return out


def old_tree(ref: str, into: Path) -> Path | None:
    """The ``watui`` package of commit ``ref``, extracted (read-only for the repository)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "watui"], capture_output=True)
    if archive.returncode != 0:
        print(f"(no 'before' server: git archive {ref} failed: {archive.stderr.decode().strip()})")
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    where = subprocess.run([sys.executable, "-c", "import watui.qr; print(watui.qr.__file__)"],
                           cwd=into, env={**os.environ, "PYTHONPATH": str(into)}, capture_output=True, text=True)
    assert where.stdout.startswith(str(into)), f"the old tree is not the one imported: {where.stdout}"
    return into


def server_figures(runs: list[ServerRun], sessions: int, ttl: float) -> list[Figure]:
    figures: list[Figure] = []
    for run in runs:
        w = run.watch
        figures += [
            Figure(f"{run.name}: sessions created", run.created, "", digits=0,
                   note=f"of {sessions}, in {run.create_s:.1f} s"),
            Figure(f"{run.name}: (a) nobody watching, qr events", run.idle_rate, "/s", digits=0,
                   note=f"asked {sessions / ttl:.0f}/s; CPU: server {run.idle_cpu:.0f} %, "
                        f"its child processes {run.idle_children_cpu:.0f} %"),
            Figure(f"{run.name}: (b) one /v1/events subscriber, qr events", run.watched_rate, "/s", digits=0,
                   note=f"CPU: server {run.watched_cpu:.0f} %, its child processes {run.watched_children_cpu:.0f} %"),
            Figure(f"{run.name}: (b) qr frames received", w.codes / run.window_s, "/s", digits=0,
                   note=f"{w.drawn / run.window_s:.0f}/s with qr_data, the rest superseded or expired undrawn"),
            Figure(f"{run.name}: (b) delay event -> client, frames with qr_data",
                   statistics.median(w.delays) * 1000 if w.delays else float("nan"), "ms", digits=0,
                   note=f"median; p99 {percentile(w.delays, 99) * 1000:.0f} ms" if w.delays else "none"),
            Figure(f"{run.name}: SIGTERM to exit", run.stop_s, "s", digits=1,
                   note="killed at the cap" if run.stop_killed else ""),
        ]
    return figures


async def bench(args: argparse.Namespace) -> None:
    print_table("QR drawing, in this process", drawing_figures(args.codes))
    runs: list[ServerRun] = []
    with tempfile.TemporaryDirectory(prefix="watui-before-") as tmp:
        before = old_tree(args.before, Path(tmp)) if args.before else None
        for name, tree in (("before", before), ("after", REPO)):
            if tree is None:
                continue
            print(f"... {name}: {args.sessions} sessions, a new code every {args.ttl:g} s", flush=True)
            runs.append(await run_server(name, tree, args.sessions, args.ttl, args.seconds, args.stop_cap))
    print_table(f"QR codes a server sustains: {args.sessions} sessions rotating every {args.ttl:g} s, "
                f"{args.seconds:g} s windows", server_figures(runs, args.sessions, args.ttl))
    if len(runs) == 2:
        old, new = runs
        ratios = [
            Figure("after / before, (a) qr events a second", new.idle_rate / max(old.idle_rate, 1e-9), "x", digits=1),
            Figure("after / before, (b) qr events a second", new.watched_rate / max(old.watched_rate, 1e-9), "x",
                   digits=1),
            Figure("after / before, (b) frames with qr_data received",
                   new.watch.drawn / max(old.watch.drawn, 1), "x", digits=1),
        ]
        print_table("Before vs after, same run", ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--ttl", type=float, default=1.0, help="seconds each code lasts")
    parser.add_argument("--seconds", type=float, default=8.0, help="each measuring window")
    parser.add_argument("--codes", type=int, default=400, help="fresh codes for the drawing figures")
    parser.add_argument("--before", default=BEFORE, help="commit of the 'before' server ('' to skip it)")
    parser.add_argument("--stop-cap", type=float, default=30.0, help="seconds a server gets to exit on SIGTERM")
    args = parser.parse_args(argv)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
