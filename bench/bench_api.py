"""HTTP API benchmark (issue 4): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_api [--sessions 10000] [--seconds 5] [--concurrency 16]

A store with ``--sessions`` sessions (stopped, one owner) is filled through the manager, then a
real ``watui serve`` (a subprocess) answers keep-alive clients for ``--seconds`` per route:
``GET /v1/sessions`` (the default page of 20, a page of 100, a filtered page deep in the list),
``GET /v1/sessions/{id}``, and ``GET /v1/health`` (no key, no store: the framework's floor).

Clients are raw asyncio sockets speaking HTTP/1.1 keep-alive, so the client side costs little
next to the server; both share the machine's cores, so the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench._util import Figure, percentile, print_table
from bench.bench_sse import Spawned, spawn_watui
from watui.config import Settings
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate


async def fill(data_dir: Path, count: int) -> str:
    """``count`` stopped sessions through the manager; returns one id to fetch."""
    settings = Settings(data_dir=data_dir, engine="simulated", sqlite_synchronous="NORMAL")
    manager = await SessionManager.open(settings)
    service = manager.service(Caller(owner="bench"))
    try:
        first = ""
        for start in range(0, count, 500):
            made = await asyncio.gather(*(
                service.create_session(SessionCreate(name=f"session-{n:05d}", start=False))
                for n in range(start, min(count, start + 500))
            ))
            first = first or made[0].id
        return first
    finally:
        await manager.aclose()


class KeepAliveClient:
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}\r\n".encode())
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hammer(server: Spawned, key: str | None, path: str, seconds: float,
                 concurrency: int) -> tuple[int, int, list[float]]:
    """Requests completed, how many were not 200, and each one's latency."""
    host, port = server.host_port
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal failures
        client = KeepAliveClient(host, port, headers)
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                if await client.get(path) != 200:
                    failures += 1
                latencies.append(time.perf_counter() - began)
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), failures, latencies


async def bench(sessions: int, seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="watui-bench-api-") as tmp:
        data_dir = Path(tmp)
        began = time.perf_counter()
        one = await fill(data_dir, sessions)
        filled = time.perf_counter() - began
        server = spawn_watui(data_dir)
        key = (data_dir / "admin.key").read_text().strip()
        routes = [
            ("GET /v1/sessions", "/v1/sessions", key),
            ("GET /v1/sessions?limit=100", "/v1/sessions?limit=100", key),
            ("GET /v1/sessions?status=stopped&offset=9000&limit=100",
             "/v1/sessions?status=stopped&offset=9000&limit=100", key),
            ("GET /v1/sessions/{id}", f"/v1/sessions/{one}", key),
            ("GET /v1/health (no key)", "/v1/health", None),
        ]
        figures = [Figure(f"fill {sessions} sessions", filled, "s", note="through the manager")]
        try:
            await hammer(server, key, "/v1/sessions", 1.0, concurrency)  # warm up
            for label, path, auth in routes:
                count, failures, latencies = await hammer(server, auth, path, seconds, concurrency)
                figures += [
                    Figure(f"{label}: requests/s", count / seconds, "req/s", digits=0,
                           note=f"{failures} not 200" if failures else ""),
                    Figure(f"{label}: latency p50", percentile(latencies, 50) * 1000, "ms", digits=2),
                    Figure(f"{label}: latency p99", percentile(latencies, 99) * 1000, "ms", digits=2),
                ]
        finally:
            server.stop()
        print_table(f"HTTP API, {sessions} sessions, {concurrency} keep-alive clients, {seconds:.0f} s per route",
                    figures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    asyncio.run(bench(args.sessions, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
