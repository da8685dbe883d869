"""The server at scale (issue 19): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_scale [--sessions 50000] [--stop-sessions 20000]
                                          [--before ceb02f9] [--before-sessions 5000]
                                          [--concurrency 16] [--first-ttl 20] [--next-ttl 10]

Every figure comes from a real ``watui serve --engine simulated`` (a subprocess on loopback,
``--port 0``, a fresh data directory) whose simulated phone shows a new QR code every
``--first-ttl`` seconds, then every ``--next-ttl`` seconds (``WATUI_QR_FIRST_TTL`` and
``WATUI_QR_NEXT_TTL``, which the server hands to the simulated engine; six codes a connection,
then a new connection, four connections before ``failed/qr_timeout``, as with WhatsApp).
Nobody watches: no stream, no webhook, so no code is drawn.

1. **Create and link** ``--sessions`` sessions: ``POST /v1/sessions`` (start: the default)
   from ``--concurrency`` keep-alive connections; a ``503 OVERLOADED`` is retried after its
   ``Retry-After`` and counted by reason. Then each session is linked with
   ``POST /v1/sessions/{id}/simulate {"action": "scan"}`` (a ``409``, no code up between two
   connections, is retried 0.5 s later), in creation order, once every session is created, or
   earlier when the oldest unlinked session is ``--link-age`` seconds old (so the bench, not
   the server, never lets a code run out: 4 connections of 70 s at 20 s/10 s). Reported: the
   create rate and latency, refusals, the time until every session is ``connected``
   (``watui_sessions`` in ``GET /metrics``), how many are ``failed`` at the end (goal 0), the
   server's RSS a session (VmRSS of the server and its child processes, after minus before,
   over N), and the ``qr`` events written a second while the sessions were created
   (``watui_events_written_total{type="qr"}``) beside the codes due by then (from each
   session's creation time and the rotation).
2. **SIGTERM** with ``--stop-sessions`` sessions showing QR codes, nobody watching: the time
   from the signal to the process's exit (goal 10 s).
3. **Before and after, same run**: the tree of ``--before`` (``git archive`` into a temporary
   directory, the commit before QR codes left the critical path) and this tree, one after the
   other, each given ``--before-sessions`` sessions created the same way and ``--hold``
   seconds more of rotation before they are linked: the ``qr`` events each wrote a second in
   those ``--hold`` seconds, the codes due then, and the ratio. Then the sessions are scanned
   as in 1, for ``--link-cap`` seconds at most (the old server's codes fall behind and its
   scans wait or find no code up), and SIGTERM (capped at ``--stop-cap``: the old server
   draws its backlog first).

``GET /v1/health`` latency under silent connections is bench/bench_connections.py's.
Client and server share the machine's cores: the bench's own CPU share is printed. At the
defaults the run takes about 7 minutes on 2 cores; to scale it down, for instance
``--sessions 10000 --stop-sessions 5000 --before-sessions 1000 --hold 20 --link-cap 20``;
a count of 0 skips its part.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench._util import Figure, fs_type, load_average, mib, percentile, print_table
from bench.bench_qr_server import old_tree, spawn_in
from bench.bench_sse import Spawned

REPO = Path(__file__).resolve().parents[1]
BEFORE = "ceb02f9"
"""The last commit before QR codes left the critical path (0f67e2f): every code drawn in one
helper process before its ``qr`` event was made."""
CONNECT_LATENCY = 0.3
"""The simulated engine's socket open delay (watui/engines/spec.py), before each connection's first code."""
ROUNDS = 4
"""Connections a session gets to be scanned: 1 + ``WATUI_QR_MAX_RETRIES`` (3)."""
CODES_PER_ROUND = 6
METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


# ---------------------------------------------------------------------------- client


class HttpError(Exception):
    pass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}


class Connection:
    """One HTTP/1.1 keep-alive connection, one request at a time: a few tens of microseconds of
    the bench's CPU a request, where httpx takes about a millisecond, on cores the server shares."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {key}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None, timeout: float = 120) -> Reply:
        """One request; a connection the server closed (keep-alive timeout) is reopened once."""
        for attempt in (1, 2):
            fresh = self.writer is None
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(method, path, body)
            except TimeoutError:  # first: it is an OSError too; no answer in time is not retried
                self.close()
                raise
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                self.close()
                if attempt == 2 or fresh:
                    raise HttpError(f"{method} {path}: {exc!r}") from exc
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: object) -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2**24)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        line = await self.reader.readline()
        if not line:
            raise HttpError("connection closed")
        status = int(line.split()[1])
        headers: dict[str, str] = {}
        while (raw := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16):
                parts.append(await self.reader.readexactly(size + 2))
            while (await self.reader.readline()) not in (b"\r\n", b""):
                pass
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ---------------------------------------------------------------------------- server side


def metrics_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = METRIC.match(line)
        if match:
            name, labels, value = match.groups()
            out.setdefault(name, []).append((dict(LABEL.findall(labels or "")), float(value)))
    return out


@dataclass
class Sample:
    """One reading of ``GET /metrics`` and of the server's memory."""

    at: float
    qr: float
    statuses: Counter[str]
    lag_p99: float
    refusals: Counter[str]
    rss: int

    @classmethod
    async def take(cls, conn: Connection, pid: int) -> Sample:
        reply = await conn.request("GET", "/metrics", timeout=30)
        if reply.status != 200:
            raise HttpError(f"GET /metrics answered {reply.status}")
        m = metrics_of(reply.body.decode())
        statuses: Counter[str] = Counter()
        for labels, value in m.get("watui_sessions", []):
            statuses[labels.get("status", "?")] += int(value)
        refusals: Counter[str] = Counter()
        for labels, value in m.get("watui_overload_refusals_total", []):
            refusals[labels.get("reason", "?")] += int(value)
        qr = sum(v for labels, v in m.get("watui_events_written_total", []) if labels.get("type") == "qr")
        lag = m.get("watui_event_loop_lag_p99_seconds", [({}, math.nan)])[0][1]
        return cls(time.monotonic(), qr, statuses, lag, refusals, tree_rss(pid))


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (the SQLite writer, the drawing process, hosts)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def tree_rss(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def tree_cpu(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants."""
    total = 0.0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def codes_due(created: list[float], linked: list[float], until: float, first: float, nxt: float) -> int:
    """Codes the simulated phone shows by ``until`` for sessions created at ``created`` (and
    scanned at ``linked``, inf if not): each connection shows its first code after the connect
    delay, lasting ``first`` s, then five more of ``nxt`` s; then a new connection."""
    offsets = [0.0] + [first + i * nxt for i in range(CODES_PER_ROUND - 1)]
    period = CONNECT_LATENCY + first + (CODES_PER_ROUND - 1) * nxt
    total = 0
    for made, scanned in zip(created, linked, strict=True):
        end = min(until, scanned) - made
        for round_ in range(ROUNDS):
            base = round_ * period + CONNECT_LATENCY
            if base > end:
                break
            total += sum(1 for o in offsets if base + o <= end)
    return total


# ---------------------------------------------------------------------------- one server


@dataclass
class Run:
    name: str
    sessions: int
    created: int = 0
    create_s: float = math.nan
    create_latencies: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    create_errors: Counter[str] = field(default_factory=Counter)
    qr_during_create: float = math.nan
    due_during_create: int = 0
    qr_held: float = math.nan
    """qr events written a second from the last create to the end of the hold."""
    qr_span: float = math.nan
    """The same from the first create."""
    due_held: int = 0
    held_s: float = math.nan
    peak_qr_rate: float = math.nan
    lag_p99_max: float = math.nan
    link_started_after: float = math.nan
    link_s: float = math.nan
    all_linked_s: float = math.nan
    scan_retries: int = 0
    unlinked: int = 0
    """Sessions never scanned successfully (``--link-cap`` reached)."""
    scan_errors: Counter[str] = field(default_factory=Counter)
    oldest_at_scan: float = math.nan
    final: Counter[str] = field(default_factory=Counter)
    rss_before: int = 0
    rss_created: int = 0
    rss_linked: int = 0
    rss_peak: int = 0
    server_cpu_create: float = math.nan
    client_cpu_create: float = math.nan
    stop_s: float = math.nan
    stop_killed: bool = False
    stop_forced: bool = False
    exit_code: int | None = None
    server_errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


class Monitor:
    """Reads ``/metrics`` every ``every`` seconds on a connection of its own."""

    def __init__(self, conn: Connection, pid: int, every: float = 2.0, progress: float = 0) -> None:
        self.conn, self.pid, self.every, self.progress = conn, pid, every, progress
        self.samples: list[Sample] = []
        self.task: asyncio.Task[None] | None = None
        self.began = time.monotonic()
        self.lock = asyncio.Lock()  # one request at a time on the connection

    async def sample(self) -> Sample:
        async with self.lock:
            s = await Sample.take(self.conn, self.pid)
        self.samples.append(s)
        return s

    def start(self) -> None:
        async def loop() -> None:
            shown = self.began
            while True:
                with contextlib.suppress(HttpError, TimeoutError):
                    s = await self.sample()
                    if self.progress and s.at - shown >= self.progress and len(self.samples) > 1:
                        before = next(x for x in reversed(self.samples) if x.at <= shown)
                        shown = s.at
                        print(f"    {s.at - self.began:5.0f} s  {state_note(s.statuses)}; "
                              f"qr {(s.qr - before.qr) / (s.at - before.at):.0f}/s, "
                              f"lag p99 {s.lag_p99 * 1000:.0f} ms, refused {sum(s.refusals.values())}, "
                              f"RSS {mib(s.rss):.0f} MiB", flush=True)
                await asyncio.sleep(self.every)

        self.task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def create_all(run: Run, host: str, port: int, key: str, count: int, concurrency: int,
                     created_at: list[float], ids: list[str], prefix: str, give_up: float) -> None:
    """Create ``count`` sessions from ``concurrency`` connections; ``created_at``/``ids`` are
    filled in creation order (by the time each 201 arrived)."""
    names = iter(range(count))

    async def lookup(conn: Connection, name: str) -> str | None:
        reply = await conn.request("GET", f"/v1/sessions?q={name}&limit=5")
        for s in reply.json().get("sessions", []):
            if s["name"] == name:
                return s["id"]
        return None

    async def worker() -> None:
        conn = Connection(host, port, key)
        try:
            for n in names:
                name = f"{prefix}-{n:06d}"
                retried = False
                while time.monotonic() < give_up:
                    began = time.perf_counter()
                    try:
                        reply = await conn.request("POST", "/v1/sessions", {"name": name}, timeout=60)
                    except (HttpError, TimeoutError) as exc:
                        run.create_errors[type(exc).__name__] += 1
                        retried = True
                        await asyncio.sleep(1)
                        continue
                    if reply.status == 201:
                        run.create_latencies.append(time.perf_counter() - began)
                        ids.append(reply.json()["session_id"])
                        created_at.append(time.monotonic())
                        break
                    if reply.status == 503:
                        details = reply.json().get("error", {}).get("details", {})
                        run.refused[details.get("reason") or "connections"] += 1
                        await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                        continue
                    if reply.status == 409 and retried:  # a create that went through before its answer was lost
                        found = await lookup(conn, name)
                        if found:
                            ids.append(found)
                            created_at.append(time.monotonic())
                            break
                    run.create_errors[f"HTTP {reply.status}"] += 1
                    break
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def link_all(run: Run, host: str, port: int, key: str, ids: list[str], created_at: list[float],
                   linked_at: list[float], concurrency: int, start: asyncio.Event, done_creating: asyncio.Event,
                   give_up: list[float]) -> None:
    """Scan every session, in creation order, from ``concurrency`` connections, once ``start``
    is set; ``ids`` may still grow meanwhile, until ``done_creating``. Past ``give_up[0]``
    (a monotonic time, which may move once linking starts) sessions are left unscanned."""
    await start.wait()
    position = 0
    oldest = 0.0

    def take() -> int | None:
        nonlocal position
        if position < len(ids):
            position += 1
            return position - 1
        return None

    async def worker() -> None:
        nonlocal oldest
        conn = Connection(host, port, key)
        try:
            while True:
                i = take()
                if i is None:
                    if done_creating.is_set():
                        return
                    await asyncio.sleep(0.05)
                    continue
                oldest = max(oldest, time.monotonic() - created_at[i])
                while time.monotonic() < give_up[0]:
                    try:
                        reply = await conn.request("POST", f"/v1/sessions/{ids[i]}/simulate", {"action": "scan"},
                                                   timeout=max(1.0, min(60.0, give_up[0] - time.monotonic())))
                    except (HttpError, TimeoutError) as exc:
                        run.scan_errors[type(exc).__name__] += 1
                        await asyncio.sleep(1)
                        continue
                    if reply.status == 200:
                        linked_at[i] = time.monotonic()
                        break
                    if reply.status == 409:  # no code up: between two connections (or failed)
                        status = reply.json().get("error", {}).get("details", {}).get("status")
                        if status == "failed":
                            run.scan_errors["session already failed"] += 1
                            break
                        run.scan_retries += 1
                        await asyncio.sleep(0.5)
                        continue
                    run.scan_errors[f"HTTP {reply.status}"] += 1
                    break
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.oldest_at_scan = oldest


async def settle(monitor: Monitor, expected: int, timeout: float) -> Sample:
    """Wait until no session is on its way any more (every one connected, failed or stopped)."""

    def settled(s: Sample) -> bool:
        moving = sum(s.statuses[k] for k in ("initializing", "qr_ready", "connecting", "disconnected"))
        return moving == 0 and sum(s.statuses.values()) >= expected

    return await wait_for_sample(monitor, settled, timeout)


async def wait_for_sample(monitor: Monitor, done: Callable[[Sample], bool], timeout: float) -> Sample:
    """Sample until ``done`` holds or ``timeout`` passes; the last sample read (a server that
    does not answer ``/metrics`` in time leaves the one before)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(HttpError, TimeoutError):
            if done(await monitor.sample()):
                break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return monitor.samples[-1]


async def stop_server(run: Run, server: Spawned, cap: float) -> None:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        run.exit_code = server.proc.wait(cap)
    except subprocess.TimeoutExpired:
        run.stop_killed = True
        os.killpg(server.proc.pid, signal.SIGKILL)
        run.exit_code = server.proc.wait()
    run.stop_s = time.monotonic() - started
    await asyncio.sleep(0.2)  # the output pump reads the last lines
    run.stop_forced = any("exiting now" in line for line in server.output)


async def scenario(name: str, tree: Path, sessions: int, args: argparse.Namespace, *, link: bool,
                   hold: float, prefix: str, link_cap: float | None = None) -> Run:
    """One server: create ``sessions`` (then ``hold`` s of rotation), link them if ``link``
    (else wait until each shows a code), then SIGTERM it. ``link_cap``: seconds the scans and
    the wait for their links may take in all (the old server's scans can wait minutes)."""
    run = Run(name, sessions)
    env = {"WATUI_QR_FIRST_TTL": str(args.first_ttl), "WATUI_QR_NEXT_TTL": str(args.next_ttl),
           "WATUI_LOG_FORMAT": "text", **dict(kv.split("=", 1) for kv in args.env)}
    with tempfile.TemporaryDirectory(prefix="watui-bench-scale-", dir=args.tmp) as tmp:
        server = spawn_in(tree, Path(tmp) / "data", env)
        key = (Path(tmp) / "data" / "admin.key").read_text().strip()
        host, port = server.host_port
        pid = server.proc.pid
        monitor = Monitor(Connection(host, port, key), pid, progress=args.progress)
        created_done = math.inf
        try:
            await asyncio.sleep(1)
            first = await monitor.sample()
            monitor.began = first.at
            run.rss_before = first.rss
            monitor.start()
            created_at: list[float] = []
            ids: list[str] = []
            linked_at = [math.inf] * sessions
            give_up = time.monotonic() + args.give_up
            link_give_up = [give_up]
            start_linking, done_creating = asyncio.Event(), asyncio.Event()
            linker = None
            if link:
                linker = asyncio.create_task(link_all(run, host, port, key, ids, created_at, linked_at,
                                                      args.concurrency, start_linking, done_creating,
                                                      link_give_up))

            async def age_guard() -> None:  # link early rather than let the oldest code run out
                while not start_linking.is_set():
                    if created_at and time.monotonic() - created_at[0] >= args.link_age:
                        run.link_started_after = time.monotonic() - began
                        start_linking.set()
                    await asyncio.sleep(0.2)

            began = time.monotonic()
            guard = asyncio.create_task(age_guard()) if link else None
            cpu0, client0 = tree_cpu(pid), time.process_time()
            qr0 = first.qr
            await create_all(run, host, port, key, sessions, args.concurrency, created_at, ids, prefix, give_up)
            created_done = time.monotonic()
            done_creating.set()
            run.create_s = created_done - began
            run.created = len(ids)
            run.server_cpu_create = (tree_cpu(pid) - cpu0) / run.create_s * 100
            run.client_cpu_create = (time.process_time() - client0) / run.create_s * 100
            s = await wait_for_sample(monitor, lambda _: True, 30)
            run.qr_during_create = (s.qr - qr0) / run.create_s
            run.due_during_create = codes_due(created_at, linked_at[:len(created_at)], created_done,
                                              args.first_ttl, args.next_ttl)
            run.rss_created = s.rss
            if hold > 0 and not start_linking.is_set():
                qr1 = s.qr
                await asyncio.sleep(hold)
                s = await wait_for_sample(monitor, lambda _: True, 30)
                run.held_s = s.at - created_done
                run.qr_held = (s.qr - qr1) / run.held_s
                run.qr_span = (s.qr - qr0) / (s.at - began)
                run.due_held = codes_due(created_at, linked_at[:len(created_at)], s.at,
                                         args.first_ttl, args.next_ttl) - run.due_during_create
            if link and linker is not None:
                if not start_linking.is_set():
                    run.link_started_after = time.monotonic() - began
                    start_linking.set()
                link_began = began + run.link_started_after
                if link_cap is not None:
                    link_give_up[0] = min(give_up, time.monotonic() + link_cap)
                await linker
                run.link_s = time.monotonic() - link_began
                run.unlinked = sum(1 for t in linked_at[:run.created] if t == math.inf)
                s = await settle(monitor, run.created, args.settle if link_cap is None else
                                 max(5.0, link_give_up[0] - time.monotonic()))
                run.all_linked_s = (s.at - began) if s.statuses["connected"] >= run.created else math.nan
                run.rss_linked = s.rss
            else:
                s = await settle_in_qr(monitor, run.created, args.settle)
            if guard is not None:
                guard.cancel()
            run.final = s.statuses
        finally:
            await monitor.stop()
            monitor.conn.close()
            run.samples = monitor.samples
            with contextlib.suppress(Exception):
                await stop_server(run, server, args.stop_cap)
            if server.proc.poll() is None:
                os.killpg(pid, signal.SIGKILL)
                server.proc.wait()
        rates = [(b.qr - a.qr) / (b.at - a.at) for a, b in zip(run.samples, run.samples[1:], strict=False)
                 if b.at - a.at > 1 and b.at <= created_done + 0.5]
        run.peak_qr_rate = max(rates, default=math.nan)
        lags = [x.lag_p99 for x in run.samples if x.at <= created_done + 0.5 and not math.isnan(x.lag_p99)]
        run.lag_p99_max = max(lags, default=math.nan)
        run.rss_peak = max((x.rss for x in run.samples), default=0)
        run.server_errors = [line.rstrip() for line in server.output
                             if "Traceback" in line or " ERROR " in line or "CRITICAL" in line][:5]
    return run


async def settle_in_qr(monitor: Monitor, expected: int, timeout: float) -> Sample:
    """Wait until every session shows a code (nobody watching, nobody scanning)."""
    return await wait_for_sample(monitor, lambda s: s.statuses["qr_ready"] >= expected, timeout)


# ---------------------------------------------------------------------------- figures


def kib(n: float) -> float:
    return n / 1024


def state_note(final: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(final.items()) if v) or "none"


def scale_figures(run: Run) -> list[Figure]:
    lat = run.create_latencies
    n = max(run.created, 1)
    refused = sum(run.refused.values())
    return [
        Figure("sessions created", run.created, "", goal=run.sessions, op=">=", digits=0,
               note=f"in {run.create_s:.1f} s; errors: {dict(run.create_errors) or 'none'}"),
        Figure("create rate", run.created / run.create_s, "/s", digits=0,
               note=f"latency p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
                    f"max {max(lat, default=math.nan) * 1000:.0f} ms"),
        Figure("creates refused 503 OVERLOADED", refused, "", digits=0,
               note=", ".join(f"{k} {v}" for k, v in run.refused.items()) or "none"),
        Figure("event-loop lag p99 while creating, highest", run.lag_p99_max * 1000, "ms", digits=0,
               note="watui_event_loop_lag_p99_seconds, read every 2 s; refusals above 250 ms"),
        Figure("CPU while creating: server + children / bench", run.server_cpu_create, "%", digits=0,
               note=f"the bench (client) {run.client_cpu_create:.0f} %; 2 cores = 200 %"),
        Figure("qr events written a second while creating", run.qr_during_create, "/s", digits=0,
               note=f"{run.due_during_create / run.create_s:.0f}/s due by the rotation; "
                    f"peak 2 s window {run.peak_qr_rate:.0f}/s"),
        Figure("qr events written / due while creating",
               run.qr_during_create * run.create_s / max(run.due_during_create, 1) * 100, "%", digits=0),
        Figure("linking began after", run.link_started_after, "s", digits=1,
               note=f"oldest session's age at its scan {run.oldest_at_scan:.0f} s; "
                    f"scans retried (no code up) {run.scan_retries}; errors {dict(run.scan_errors) or 'none'}"),
        Figure("first create -> every session connected", run.all_linked_s, "s", digits=1,
               note=f"scans took {run.link_s:.1f} s ({run.created / run.link_s:.0f}/s)"),
        Figure("sessions failed at the end", run.final["failed"], "", goal=0, digits=0,
               note=f"statuses: {state_note(run.final)}"),
        Figure("server RSS a session, all linked", kib(run.rss_linked - run.rss_before) / n, "KiB", goal=15,
               digits=1, note=f"{mib(run.rss_before):.0f} -> {mib(run.rss_linked):.0f} MiB (server + children)"),
        Figure("server RSS a session, all created (in QR)", kib(run.rss_created - run.rss_before) / n, "KiB",
               digits=1, note=f"peak {mib(run.rss_peak):.0f} MiB"),
        Figure("SIGTERM to exit, all linked", run.stop_s, "s", digits=1, note=stop_note(run)),
    ]


def stop_note(run: Run) -> str:
    if run.stop_killed:
        return "killed at the cap"
    code = run.exit_code
    how = f"ended by signal {-code} (re-raised once stopped)" if code is not None and code < 0 else f"exit status {code}"
    return how + ("; forced exit ('exiting now')" if run.stop_forced else "")


def stop_figures(run: Run) -> list[Figure]:
    return [
        Figure("sessions showing QR codes at SIGTERM", run.final["qr_ready"], "", digits=0,
               note=f"of {run.sessions} (created in {run.create_s:.1f} s, {run.created / run.create_s:.0f}/s); "
                    f"refused {sum(run.refused.values())}; statuses: {state_note(run.final)}"),
        Figure("SIGTERM to exit", run.stop_s, "s", goal=10, digits=1, note=stop_note(run)),
    ]


def compare_figures(runs: list[Run], args: argparse.Namespace) -> list[Figure]:
    figures = []
    for run in runs:
        figures += [
            Figure(f"{run.name}: sessions created", run.created, "", digits=0,
                   note=f"in {run.create_s:.1f} s ({run.created / run.create_s:.0f}/s), "
                        f"refused {sum(run.refused.values())}"),
            Figure(f"{run.name}: qr events written a second", run.qr_held, "/s", digits=0,
                   note=f"the {run.held_s:.0f} s after the last create; {run.due_held / run.held_s:.0f}/s due; "
                        f"from the first create {run.qr_span:.0f}/s"),
            Figure(f"{run.name}: qr events written / due", run.qr_held * run.held_s / max(run.due_held, 1) * 100,
                   "%", digits=0),
            Figure(f"{run.name}: sessions connected at the end", run.final["connected"], "", digits=0,
                   note=f"statuses: {state_note(run.final)}; " + (
                       f"all linked {run.all_linked_s:.0f} s after the first create" if run.final["connected"] >= run.created
                       else f"{run.unlinked} not linked within {args.link_cap:g} s; scans answered 409 (no code up) "
                            f"{run.scan_retries}, scan errors {dict(run.scan_errors) or 'none'}")),
            Figure(f"{run.name}: SIGTERM to exit", run.stop_s, "s", digits=1, note=stop_note(run)),
        ]
    if len(runs) == 2:
        old, new = runs
        figures.append(Figure("after / before, qr events written a second", new.qr_held / max(old.qr_held, 1e-9),
                              "x", digits=1, note="the same load: the after figure is what was due, not a ceiling "
                                                  "(bench_qr_server finds the ceiling)"))
    return figures


# ---------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load {load_average()}; data dirs on {fs_type(Path(args.tmp or tempfile.gettempdir()))}; "
          f"codes every {args.first_ttl:g} s then {args.next_ttl:g} s; {args.concurrency} connections", flush=True)
    if args.sessions:
        print(f"... 1. create and link {args.sessions} sessions", flush=True)
        run = await scenario("scale", REPO, args.sessions, args, link=True, hold=0, prefix="scale")
        print_table(f"{args.sessions} sessions created and linked over HTTP "
                    f"(codes every {args.first_ttl:g} s, then {args.next_ttl:g} s)", scale_figures(run))
        for line in run.server_errors:
            print("  server:", line)
    if args.stop_sessions:
        print(f"... 2. SIGTERM with {args.stop_sessions} sessions showing codes", flush=True)
        run = await scenario("stop", REPO, args.stop_sessions, args, link=False, hold=0, prefix="stop")
        print_table(f"SIGTERM with {args.stop_sessions} sessions showing QR codes, nobody watching",
                    stop_figures(run))
        for line in run.server_errors:
            print("  server:", line)
    if args.before_sessions:
        runs = []
        with tempfile.TemporaryDirectory(prefix="watui-before-") as tmp:
            before = old_tree(args.before, Path(tmp)) if args.before else None
            for name, tree in (("before", before), ("after", REPO)):
                if tree is None:
                    continue
                print(f"... 3. {name}: {args.before_sessions} sessions, {args.hold:g} s of rotation, then linked",
                      flush=True)
                runs.append(await scenario(name, tree, args.before_sessions, args, link=True, hold=args.hold,
                                           prefix="cmp", link_cap=args.link_cap))
        print_table(f"Before ({args.before}) and after, same run: {args.before_sessions} sessions, "
                    f"codes every {args.first_ttl:g} s then {args.next_ttl:g} s", compare_figures(runs, args))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50_000, help="1: sessions created and linked (0 skips)")
    parser.add_argument("--stop-sessions", type=int, default=20_000, help="2: sessions in QR at SIGTERM (0 skips)")
    parser.add_argument("--before", default=BEFORE, help="3: commit of the 'before' server ('' skips it)")
    parser.add_argument("--before-sessions", type=int, default=5_000, help="3: sessions each server gets (0 skips)")
    parser.add_argument("--hold", type=float, default=40.0, help="3: seconds of rotation after the creates")
    parser.add_argument("--link-cap", type=float, default=60.0,
                        help="3: seconds the scans and their links may take in all")
    parser.add_argument("--concurrency", type=int, default=16, help="connections creating (and linking)")
    parser.add_argument("--first-ttl", type=float, default=20.0, help="seconds the first code of a connection lasts")
    parser.add_argument("--next-ttl", type=float, default=10.0, help="seconds each next code lasts")
    parser.add_argument("--link-age", type=float, default=180.0,
                        help="start linking once the oldest session is this old, creates or not")
    parser.add_argument("--give-up", type=float, default=900.0, help="seconds a server's creates and scans may take")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait for the last links")
    parser.add_argument("--stop-cap", type=float, default=30.0, help="seconds a server gets to exit on SIGTERM")
    parser.add_argument("--tmp", default=None, help="where the data directories go (default: the temp dir)")
    parser.add_argument("--progress", type=float, default=10.0, help="print a progress line this often (0: never)")
    parser.add_argument("--env", action="append", default=[], metavar="WATUI_X=V", help="more server settings")
    args = parser.parse_args(argv)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
