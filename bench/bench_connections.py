"""Connections that never send a request (issue 19): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_connections [--silent 1100] [--fd-limit 1024] [--seconds 25]

Three servers of the same watui app (simulated engine), one after the other in the same run,
each a subprocess whose open-files limit is ``--fd-limit`` (soft = hard, as a service manager
may leave it):

- **stock**: uvicorn as watui configured it before (no header deadline, no connection cap);
- **limit_concurrency**: the same with uvicorn's ``limit_concurrency`` at watui's default cap;
- **watui**: ``watui serve`` as it is (``watui.server.connections``: a 10 s header deadline,
  the cap derived from the open-files limit).

Against each: ``--silent`` TCP connections that never send a byte, then a ``GET /v1/health``
every 0.25 s for ``--seconds``, each on a new connection with a 2 s timeout (what a load
balancer does). Reported: health latency p50/p99 over the window (any answer; a probe that
timed out counts as its 2 s, so the stock figures are lower bounds), the share answered 200,
the time from the flood to the first 200, and the time until the server has closed every
silent connection (shed). Then SIGTERM, and how long the server takes to exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from bench._util import Figure, Spawned, percentile, print_table, spawn_server
from watui.config import Settings
from watui.logs import configure_logging
from watui.manager import SessionManager
from watui.server import create_app
from watui.server.auth import ensure_admin_key
from watui.server.connections import default_max_connections

PROBE_EVERY = 0.25
PROBE_TIMEOUT = 2.0


# ---------------------------------------------------------------------------- servers


def run_stock_server(data_dir: Path, limit_concurrency: int | None) -> None:
    """The baseline: watui's app under uvicorn as watui configured it before this change."""
    configure_logging("text")
    settings = Settings(data_dir=data_dir, engine="simulated", host="127.0.0.1", port=0)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"stock serving on http://127.0.0.1:{port}", flush=True)

    async def main() -> None:
        manager = await SessionManager.open(settings)
        await ensure_admin_key(manager.store, settings)
        app = create_app(manager, settings, owns_manager=True)
        await Server(uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", log_config=None, lifespan="on",
            timeout_graceful_shutdown=10, timeout_keep_alive=30, proxy_headers=False,
            limit_concurrency=limit_concurrency,
        )).serve()

    asyncio.run(main())


def spawn(args: list[str], fd_limit: int, timeout: float = 60) -> Spawned:
    """A server subprocess with its open-files limit at ``fd_limit`` (soft and hard)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    return spawn_server(args, timeout=timeout, env={"WATUI_LOG_FORMAT": "text"}, preexec_fn=limit)


# ---------------------------------------------------------------------------- clients


@dataclass
class Probe:
    latency: float
    status: int  # 0: no answer in time, or the connection failed


async def probe_health(host: str, port: int) -> Probe:
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            status_line = await reader.readline()
        return Probe(time.perf_counter() - started, int(status_line.split()[1]))
    except (TimeoutError, OSError, IndexError, ValueError):
        return Probe(min(time.perf_counter() - started, PROBE_TIMEOUT), 0)
    finally:
        if writer is not None:
            writer.close()


@dataclass
class Silent:
    """A connection that never sends a byte: when the server closed it, and what it said."""

    closed_at: float | None = None
    answer: bytes = b""


async def hold_silent(host: str, port: int, out: Silent, opened: Callable[[], None]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    opened()
    try:
        out.answer = await reader.read()  # until the server closes it
    except OSError:
        pass
    out.closed_at = time.perf_counter()
    writer.close()


@dataclass
class Run:
    name: str
    idle: list[Probe] = field(default_factory=list)
    probes: list[tuple[float, Probe]] = field(default_factory=list)
    """(seconds after the flood, probe)."""
    flood_s: float = 0.0
    shed_s: float = math.nan
    still_open: int = 0
    refused_503: int = 0
    stop_s: float = math.nan

    def latencies(self) -> list[float]:
        return [p.latency for _, p in self.probes]

    def first_200(self) -> float:
        return min((at for at, p in self.probes if p.status == 200), default=math.nan)


async def measure(name: str, server: Spawned, silent: int, seconds: float) -> Run:
    run = Run(name)
    host, port = server.host_port
    run.idle = [await probe_health(host, port) for _ in range(10)]
    conns = [Silent() for _ in range(silent)]
    opened = 0
    all_open = asyncio.Event()

    def one_more() -> None:
        nonlocal opened
        opened += 1
        if opened == silent:
            all_open.set()

    started = time.perf_counter()
    holders = [asyncio.create_task(hold_silent(host, port, c, one_more)) for c in conns]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_open.wait(), 30)
    flooded = time.perf_counter()
    run.flood_s = flooded - started
    probes: list[tuple[float, asyncio.Task[Probe]]] = []
    while time.perf_counter() - flooded < seconds:
        probes.append((time.perf_counter() - flooded, asyncio.create_task(probe_health(host, port))))
        await asyncio.sleep(PROBE_EVERY)
    run.probes = [(at, await task) for at, task in probes]
    closed = [c.closed_at for c in conns if c.closed_at is not None]
    run.still_open = silent - len(closed)
    if not run.still_open:
        run.shed_s = max(closed) - flooded
    run.refused_503 = sum(c.answer.startswith(b"HTTP/1.1 503") and b'"OVERLOADED"' in c.answer for c in conns)

    stop_started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(30)
        run.stop_s = time.monotonic() - stop_started
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    return run


def figures(run: Run, silent: int, seconds: float) -> list[Figure]:
    lat = run.latencies()
    ok = sum(p.status == 200 for _, p in run.probes)
    idle = [p.latency for p in run.idle]
    return [
        Figure(f"{run.name}: health before the flood, p50", percentile(idle, 50) * 1000, "ms", digits=1),
        Figure(f"{run.name}: health under the flood, p50", percentile(lat, 50) * 1000, "ms", digits=1,
               note=f"{len(lat)} probes over {seconds:g} s; a timeout counts as {PROBE_TIMEOUT:g} s"),
        Figure(f"{run.name}: health under the flood, p99", percentile(lat, 99) * 1000, "ms", digits=1),
        Figure(f"{run.name}: health probes answered 200", ok / max(len(lat), 1) * 100, "%", digits=0,
               note=f"{sum(p.status == 503 for _, p in run.probes)} answered 503, "
                    f"{sum(p.status == 0 for _, p in run.probes)} no answer"),
        Figure(f"{run.name}: flood to the first 200", run.first_200(), "s", digits=1,
               note="" if ok else f"none in {seconds:g} s"),
        Figure(f"{run.name}: all {silent} silent connections shed", run.shed_s, "s", digits=1,
               note=f"{run.still_open} still open after {seconds:g} s" if run.still_open else
               f"{run.refused_503} of them refused at once with 503 OVERLOADED"),
        Figure(f"{run.name}: SIGTERM to exit", run.stop_s, "s", digits=1),
    ]


async def bench(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds the flood's sockets
    cap = default_max_connections(Settings(engine="simulated"), args.fd_limit)
    servers: list[tuple[str, list[str]]] = [
        ("stock", ["-m", "bench.bench_connections", "--stock-server"]),
        ("limit_concurrency", ["-m", "bench.bench_connections", "--stock-server", "--limit-concurrency", str(cap)]),
        ("watui", ["-m", "watui", "serve", "--engine", "simulated", "--port", "0"]),
    ]
    runs: list[Run] = []
    for name, command in servers:
        with tempfile.TemporaryDirectory(prefix="watui-bench-conn-") as tmp:
            print(f"... {name}: {args.silent} silent connections, open files limited to {args.fd_limit}", flush=True)
            server = spawn([*command, "--data-dir", str(Path(tmp) / "data")], args.fd_limit)
            try:
                runs.append(await measure(name, server, args.silent, args.seconds))
            finally:
                if server.proc.poll() is None:
                    server.proc.kill()
                    server.proc.wait()
    print_table(f"{args.silent} connections that never send a request, open files {args.fd_limit} "
                f"(watui's default cap there: {cap})",
                [f for run in runs for f in figures(run, args.silent, args.seconds)])
    stock, ours = runs[0], runs[-1]
    print_table("stock / watui, same run", [
        Figure("health p50 under the flood, stock / watui",
               percentile(stock.latencies(), 50) / percentile(ours.latencies(), 50), "x", digits=0,
               note="at least: the stock figure is capped by the probe timeout"),
        Figure("health p99 under the flood, stock / watui",
               percentile(stock.latencies(), 99) / percentile(ours.latencies(), 99), "x", digits=0),
    ])
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--silent", type=int, default=1100, help="connections that never send a byte")
    parser.add_argument("--fd-limit", type=int, default=1024, help="the servers' open-files limit")
    parser.add_argument("--seconds", type=float, default=25.0, help="the probing window after the flood")
    parser.add_argument("--stock-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--limit-concurrency", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stock_server:
        with contextlib.suppress(KeyboardInterrupt):
            run_stock_server(args.data_dir, args.limit_concurrency)
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
