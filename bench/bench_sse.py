"""SSE fan-out benchmark (issue 4): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_sse [--subscribers 200 1000] [--seconds 5] [--rate 20] [--rounds 3]

For each subscriber count, N clients hold ``GET /v1/events`` open on a real ``watui serve``
(simulated engine, a subprocess) while a driver starts and stops 20 sessions at ``--rate``
operations a second (status changes, QR codes with their PNG, ...). Then the same clients
listen to a bare FastAPI + sse-starlette broadcaster (in-memory, no store, no auth, frames
encoded once) that replays exactly the frames watui sent, on the same schedule and in the
same bursts (frames that reached the first watui client together are published together).

Reported per run: events, deliveries, events lost (expected set minus received set, over every
client: must be 0) and delivery latency p50/p99/max, from the event's own ``timestamp`` (set
when the server made it, so watui's figure includes the commit to SQLite) to the moment the
client read the bytes. Goal: watui's p99 within 1.5x the bare broadcaster's in every round.
Each count runs ``--rounds`` times, alternating the two servers; the table shows each round's
ratio and the figures pooled over every round's deliveries.

Clients are raw asyncio sockets with a tiny chunked/SSE parser, all in this process, so the
client side costs the same for both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from sse_starlette.sse import EventSourceResponse

from bench._util import Figure, Spawned, percentile, print_table, spawn_server

TIMESTAMP = re.compile(rb'"timestamp":"([^"]+)"')


# ---------------------------------------------------------------------------- servers


def spawn(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> Spawned:
    """Start a server subprocess and wait for its "serving on URL" line."""
    return spawn_server(args, env=env, timeout=timeout)


def spawn_watui(data_dir: Path, **env: str) -> Spawned:
    return spawn(
        ["-m", "watui", "serve", "--engine", "simulated", "--port", "0", "--data-dir", str(data_dir)],
        {"WATUI_SSE_PING_INTERVAL": "15", **{k: v for k, v in os.environ.items() if k.startswith("WATUI_")},
         **env},
    )


def run_bare_server() -> None:
    """The baseline: FastAPI + sse-starlette, one in-memory queue per client, nothing else."""
    app = FastAPI()
    queues: set[asyncio.Queue[bytes]] = set()
    counter = [0]

    @app.post("/publish")
    async def publish(request: Request) -> dict[str, list[int]]:
        """Publish a batch of events, in order, each with the timestamp the driver gave it."""
        body = await request.json()
        ids = []
        for item in body["events"]:
            counter[0] += 1
            text = json.dumps(item["data"], separators=(",", ":"), ensure_ascii=False)
            frame = f"id: {counter[0]}\nevent: {item['event']}\ndata: {text}\n\n".encode()
            for queue in queues:
                queue.put_nowait(frame)
            ids.append(counter[0])
        return {"ids": ids}

    @app.get("/events")
    async def events() -> EventSourceResponse:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(queue)

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield await queue.get()
            finally:
                queues.discard(queue)

        return EventSourceResponse(stream(), ping=15, sep="\n")

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"bare serving on http://127.0.0.1:{port}", flush=True)

    Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")).run()


# ---------------------------------------------------------------------------- clients


@dataclass
class Listener:
    """One SSE client: ids and latencies of what it read."""

    ids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    qr_latencies: list[float] = field(default_factory=list)
    frames: list[tuple[float, str, bytes]] = field(default_factory=list)
    keep_frames: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _parse_ts(raw: bytes) -> float:
    return datetime.fromisoformat(raw.decode()).timestamp()


async def listen(host: str, port: int, path: str, headers: dict[str, str], out: Listener,
                 stop_event: str = "deleted") -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{head}\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    out.connected.set()
    pending = b""
    event_id = 0
    event_type = ""
    try:
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
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
                elif line.startswith(b"event: "):
                    event_type = line[7:].decode()
                elif line.startswith(b"data: "):
                    out.ids.append(event_id)
                    match = TIMESTAMP.search(line)
                    if match:
                        latency = now - _parse_ts(match.group(1))
                        out.latencies.append(latency)
                        if event_type == "qr":
                            out.qr_latencies.append(latency)
                    if out.keep_frames:
                        out.frames.append((now, event_type, line[6:]))
                    if event_type == stop_event:
                        return
    finally:
        out.done.set()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def open_listeners(host: str, port: int, path: str, headers: dict[str, str],
                         count: int) -> tuple[list[Listener], list[asyncio.Task[None]]]:
    listeners = [Listener(keep_frames=i == 0) for i in range(count)]
    tasks = [asyncio.create_task(listen(host, port, path, headers, one)) for one in listeners]
    await asyncio.wait_for(asyncio.gather(*(one.connected.wait() for one in listeners)), 120)
    return listeners, tasks


# ---------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    name: str
    subscribers: int
    events: int
    lost: int
    latencies: list[float]
    frames: list[tuple[float, str, bytes]]
    seconds: float
    qr_latencies: list[float] = field(default_factory=list)
    cpu: float = float("nan")


async def run_watui(server: Spawned, key: str, subscribers: int, seconds: float, rate: float) -> RunResult:
    host, port = server.host_port
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=60) as client:
        sessions = []
        for n in range(20):
            created = await client.post("/v1/sessions", json={"name": f"bench-{time.time_ns()}-{n}",
                                                              "start": False})
            sessions.append(created.json()["session_id"])
        head_events: list[int] = []
        listeners, tasks = await open_listeners(host, port, "/v1/events", auth, subscribers)
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        running: set[str] = set()
        ops = int(seconds * rate)
        for i in range(ops):
            sid = sessions[i % len(sessions)]
            action = "stop" if sid in running else "start"
            response = await client.post(f"/v1/sessions/{sid}/{action}")
            if response.status_code == 200:
                (running.discard if action == "stop" else running.add)(sid)
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
        for sid in list(running):
            await client.post(f"/v1/sessions/{sid}/stop")
        marker = await client.post("/v1/sessions", json={"name": f"bench-end-{time.time_ns()}",
                                                         "start": False})
        await client.delete(f"/v1/sessions/{marker.json()['session_id']}")
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
        # What every client should have seen: the log itself, read back.
        first = min(min(one.ids) for one in listeners if one.ids)
        reference = Listener()
        await listen(host, port, f"/v1/events?last_event_id={first - 1}", auth, reference)
        head_events = reference.ids
    expected = set(head_events)
    lost = sum(len(expected - set(one.ids)) for one in listeners)
    latencies = [x for one in listeners for x in one.latencies]
    qr = [x for one in listeners for x in one.qr_latencies]
    return RunResult("watui", subscribers, len(expected), lost, latencies, listeners[0].frames, elapsed, qr,
                     cpu)


async def run_bare(server: Spawned, subscribers: int, script: list[tuple[float, str, bytes]]) -> RunResult:
    """Replay watui's frames on watui's schedule: frames that reached the first client
    together are published together, and each frame's latency counts from the moment it
    was due (so a publisher running late is the server's fault, as it would be in watui)."""
    host, port = server.host_port
    batches: list[tuple[float, list[tuple[str, dict[str, Any]]]]] = []
    for at, event_type, data in script:
        if batches and at - batches[-1][0] <= 0.001:
            batches[-1][1].append((event_type, json.loads(data)))
        else:
            batches.append((at, [(event_type, json.loads(data))]))
    if not script or script[-1][1] != "deleted":
        batches.append(((batches[-1][0] if batches else 0.0) + 0.01, [("deleted", {})]))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        listeners, tasks = await open_listeners(host, port, "/events", {}, subscribers)
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        wall = time.time() - started
        t0 = batches[0][0]
        published: list[int] = []
        for at, items in batches:
            due = started + (at - t0)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            stamp = datetime.fromtimestamp(wall + due).astimezone().isoformat()
            events = [{"event": kind, "data": {**data, "timestamp": stamp}} for kind, data in items]
            answer = await client.post("/publish", json={"events": events})
            published.extend(answer.json()["ids"])
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
    expected = set(published)
    lost = sum(len(expected - set(one.ids)) for one in listeners)
    latencies = [x for one in listeners for x in one.latencies]
    qr = [x for one in listeners for x in one.qr_latencies]
    return RunResult("bare", subscribers, len(published), lost, latencies, [], elapsed, qr, cpu)


def figures(watui: RunResult, bare: RunResult) -> list[Figure]:
    n = watui.subscribers
    out: list[Figure] = []
    for run in (watui, bare):
        out += [
            Figure(f"{run.name} {n} subs: events", run.events, "", digits=0),
            Figure(f"{run.name} {n} subs: deliveries", len(run.latencies), "", digits=0),
            Figure(f"{run.name} {n} subs: events lost", run.lost, "", goal=0, digits=0),
            Figure(f"{run.name} {n} subs: latency p50", percentile(run.latencies, 50) * 1000, "ms"),
            Figure(f"{run.name} {n} subs: latency p99", percentile(run.latencies, 99) * 1000, "ms"),
            Figure(f"{run.name} {n} subs: latency max", max(run.latencies, default=float("nan")) * 1000, "ms"),
            Figure(f"{run.name} {n} subs: server CPU per delivery", run.cpu / max(len(run.latencies), 1) * 1e6,
                   "us", note=f"{run.cpu:.1f} s CPU in {run.seconds:.1f} s"),
            Figure(f"{run.name} {n} subs: qr event latency p99", percentile(run.qr_latencies, 99) * 1000, "ms",
                   note="the PNG is drawn off the loop before the event" if run is watui else ""),
        ]
    ratio = percentile(watui.latencies, 99) / max(percentile(bare.latencies, 99), 1e-9)
    out.append(Figure(f"p99 watui / bare, {n} subs", ratio, "x", goal=1.5, digits=2))
    return out


def merge(runs: list[RunResult]) -> RunResult:
    """Several rounds as one: every delivery's latency counts, lost events add up."""
    first = runs[0]
    return RunResult(
        first.name, first.subscribers, sum(r.events for r in runs), sum(r.lost for r in runs),
        [x for r in runs for x in r.latencies], [], sum(r.seconds for r in runs),
        [x for r in runs for x in r.qr_latencies], sum(r.cpu for r in runs),
    )


async def bench(subscriber_counts: list[int], seconds: float, rate: float, rounds: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * max(subscriber_counts) + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    with tempfile.TemporaryDirectory(prefix="watui-bench-sse-") as tmp:
        watui = spawn_watui(Path(tmp))
        bare = spawn(["-m", "bench.bench_sse", "--bare-server"])
        key = (Path(tmp) / "admin.key").read_text().strip()
        try:
            for count in subscriber_counts:
                ours: list[RunResult] = []
                theirs: list[RunResult] = []
                for round_no in range(1, rounds + 1):
                    # Alternate, so a noisy neighbour on the machine hits both alike.
                    print(f"{count} subscribers, round {round_no}/{rounds}: watui ...", flush=True)
                    ours.append(await run_watui(watui, key, count, seconds, rate))
                    print(f"{count} subscribers, round {round_no}/{rounds}: bare broadcaster "
                          f"replaying {len(ours[-1].frames)} frames ...", flush=True)
                    theirs.append(await run_bare(bare, count, ours[-1].frames))
                per_round = [
                    Figure(f"round {n}: p99 watui / bare, {count} subs",
                           percentile(a.latencies, 99) / max(percentile(b.latencies, 99), 1e-9), "x", goal=1.5,
                           digits=2, note=f"{percentile(a.latencies, 99) * 1000:.1f} ms vs "
                                          f"{percentile(b.latencies, 99) * 1000:.1f} ms")
                    for n, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1)
                ]
                print_table(
                    f"SSE fan-out, {count} subscribers, {rounds} x {seconds:.0f} s at {rate:.0f} ops/s",
                    figures(merge(ours), merge(theirs)) + per_round,
                )
        finally:
            watui.stop()
            bare.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=20.0, help="session start/stop operations a second")
    parser.add_argument("--rounds", type=int, default=3, help="alternating watui/bare runs per count")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        run_bare_server()
        return
    asyncio.run(bench(args.subscribers, args.seconds, args.rate, args.rounds))


if __name__ == "__main__":
    main()
