"""What the hardening costs (issue 11): the SSRF check and the metrics, on requests/s.

    .venv/bin/python -m bench.bench_hardening [--sessions 1000] [--seconds 4] [--rounds 3]

Two ``watui serve`` subprocesses with the same data (``--sessions`` stopped sessions): one
with the webhook guard on (the default), one with ``WATUI_WEBHOOK_ALLOW_PRIVATE=true`` (the
guard's check returns at once). Keep-alive clients then, alternating servers each round:

1. ``PATCH /v1/sessions/{id}`` setting ``webhook_url`` to a public literal address: the guard
   parses and checks it (no DNS for a literal; a host name adds one resolver lookup, whose cost
   is the resolver's). Guard on vs off.
2. ``GET /v1/sessions/{id}`` with and without a scraper reading ``GET /metrics`` every
   ``--scrape-interval`` seconds (Prometheus scrapes every 15 s by default; 1 s is 15 times
   that). The figure includes what metrics cost on every commit (a counter and a histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench._util import Figure, percentile, print_table
from bench.bench_api import fill
from bench.bench_sse import Spawned, spawn_watui
from watui.webhooks.guard import WebhookGuard


class Client:
    """One HTTP/1.1 keep-alive connection, one request at a time."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hammer(server: Spawned, key: str, method: str, paths: list[str], body: bytes, seconds: float,
                 concurrency: int) -> tuple[float, list[float], int]:
    """Requests/s, latencies, and how many were not 200."""
    host, port = server.host_port
    latencies: list[float] = []
    bad = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal bad
        client = Client(host, port, key)
        path = paths[n % len(paths)]  # one session per worker: no two PATCH one session at once
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                if await client.request(method, path, body) != 200:
                    bad += 1
                latencies.append(time.perf_counter() - began)
        finally:
            client.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return len(latencies) / seconds, latencies, bad


async def scraper(server: Spawned, key: str, interval: float, durations: list[float]) -> None:
    host, port = server.host_port
    client = Client(host, port, key)
    try:
        while True:
            began = time.perf_counter()
            assert await client.request("GET", "/metrics") == 200
            durations.append(time.perf_counter() - began)
            await asyncio.sleep(interval)
    finally:
        client.close()


async def session_ids(server: Spawned, key: str, count: int) -> list[str]:
    host, port = server.host_port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /v1/sessions?limit={count} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                 "Connection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    return [s["id"] for s in json.loads(body)["sessions"]]


async def guard_check_cost(n: int = 10_000) -> float:
    """Microseconds per create/PATCH-time check of a URL with a literal public address."""
    guard = WebhookGuard()
    began = time.perf_counter()
    for _ in range(n):
        await guard.check_url("http://93.184.215.14/hook")
    return (time.perf_counter() - began) / n * 1e6


async def bench(sessions: int, seconds: float, rounds: int, concurrency: int, scrape_interval: float) -> None:
    with tempfile.TemporaryDirectory(prefix="watui-bench-hardening-") as tmp:
        guarded_dir, open_dir = Path(tmp) / "guarded", Path(tmp) / "open"
        await fill(guarded_dir, sessions)
        shutil.copytree(guarded_dir, open_dir)
        guarded = spawn_watui(guarded_dir)
        unguarded = spawn_watui(open_dir, WATUI_WEBHOOK_ALLOW_PRIVATE="true")
        key_g = (guarded_dir / "admin.key").read_text().strip()
        key_o = (open_dir / "admin.key").read_text().strip()
        patch = json.dumps({"settings": {"webhook_url": "http://93.184.215.14/hook"}}).encode()
        figures: list[Figure] = []
        try:
            ids = await session_ids(guarded, key_g, concurrency)
            paths = [f"/v1/sessions/{i}" for i in ids]
            ssrf_on: list[float] = []
            ssrf_off: list[float] = []
            plain: list[float] = []
            scraped: list[float] = []
            scrapes: list[float] = []
            for _ in range(rounds):
                rate, _, bad = await hammer(guarded, key_g, "PATCH", paths, patch, seconds, concurrency)
                assert bad == 0, f"{bad} PATCHes refused"
                ssrf_on.append(rate)
                rate, _, bad = await hammer(unguarded, key_o, "PATCH", paths, patch, seconds, concurrency)
                assert bad == 0
                ssrf_off.append(rate)
                plain.append((await hammer(guarded, key_g, "GET", paths, b"", seconds, concurrency))[0])
                task = asyncio.create_task(scraper(guarded, key_g, scrape_interval, scrapes))
                scraped.append((await hammer(guarded, key_g, "GET", paths, b"", seconds, concurrency))[0])
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for n in range(rounds):
                figures += [
                    Figure(f"round {n + 1}: PATCH webhook_url, guard on", ssrf_on[n], "req/s", digits=0),
                    Figure(f"round {n + 1}: PATCH webhook_url, guard off", ssrf_off[n], "req/s", digits=0,
                           note=f"on/off = {ssrf_on[n] / ssrf_off[n]:.3f}"),
                    Figure(f"round {n + 1}: GET session, no scraper", plain[n], "req/s", digits=0),
                    Figure(f"round {n + 1}: GET session, /metrics every {scrape_interval:g} s", scraped[n],
                           "req/s", digits=0, note=f"with/without = {scraped[n] / plain[n]:.3f}"),
                ]
            figures += [
                Figure("SSRF check: requests/s with / without (all rounds)", sum(ssrf_on) / sum(ssrf_off), "x",
                       digits=3),
                Figure("SSRF check of one literal-address URL, in process", await guard_check_cost(), "us",
                       note="a host name adds one resolver lookup (in a thread)"),
                Figure("metrics scraping: requests/s with / without (all rounds)", sum(scraped) / sum(plain), "x",
                       digits=3),
                Figure(f"GET /metrics at {sessions} sessions: p50", percentile(scrapes, 50) * 1000, "ms", digits=2),
                Figure(f"GET /metrics at {sessions} sessions: max", max(scrapes, default=0) * 1000, "ms", digits=2),
            ]
        finally:
            guarded.stop()
            unguarded.stop()
        print_table(f"Hardening costs, {sessions} sessions, {concurrency} keep-alive clients, "
                    f"{rounds} x {seconds:g} s per figure", figures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    asyncio.run(bench(args.sessions, args.seconds, args.rounds, args.concurrency, args.scrape_interval))


if __name__ == "__main__":
    main()
