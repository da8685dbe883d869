"""What the cluster benchmarks share: a cluster of real ``watui serve`` nodes, the CPU time of
every process that serves it, and a watch on the event log to wait for sessions by.

The multi-node tests' harness (nodes as subprocesses, a private ``redis-server``, a fresh
database) is the benchmarks' too; tests/ is a directory of modules, not a package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cluster.cluster_helpers import (
    LEASE_TTL,
    Cluster,
    RedisServer,
    create_key,
    fresh_database,
    wait_until,
)
from pg_server import SERVER

__all__ = ["LEASE_TTL", "TO", "Cluster", "CpuMeter", "EventWatch", "Running", "Usage", "clients_for", "cluster_roots",
           "database_counters", "feed_counts", "link_sessions", "start_cluster", "transactions", "wait_until"]

TO = "+14155550123"
"""The number the benchmarks' messages go to and come from."""


@dataclass
class Running:
    """A cluster started for one part of a benchmark, and how to drop its database."""

    cluster: Cluster
    database: str
    drop: Callable[[], None]

    def stop(self) -> None:
        self.cluster.stop()
        self.cluster.redis.stop()
        self.drop()


def start_cluster(root: Path, nodes: int, lease_ttl: float = LEASE_TTL, **env: str) -> Running:
    dsn, drop = fresh_database()
    redis = RedisServer().start()
    cluster = Cluster(dsn, redis, root, env={"WATUI_MAX_ACTIVE_SESSIONS_PER_OWNER": "100000",
                                             "WATUI_LEASE_TTL": str(lease_ttl), **env})
    running = Running(cluster, dsn.rsplit("/", 1)[1], drop)
    try:
        cluster.admin_key = create_key(dsn, "admin", admin=True)
        for i in range(nodes):
            cluster.add(f"n{i + 1}")
    except BaseException:
        running.stop()
        raise
    return running


# ---------------------------------------------------------------------------- CPU time

TICK = os.sysconf("SC_CLK_TCK")


class Usage(NamedTuple):
    """What a process (or a kind of them) used: CPU seconds in user space and in the kernel, and
    how many times its threads were switched out (voluntarily or not)."""

    user: float = 0.0
    system: float = 0.0
    switches: int = 0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __add__(self, other: object) -> Usage:
        assert isinstance(other, Usage)
        return Usage(self.user + other.user, self.system + other.system, self.switches + other.switches)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.user - other.user, self.system - other.system, self.switches - other.switches)


def _stat(pid: int) -> tuple[int, int, float, float] | None:
    """(parent pid, start time, user and system CPU seconds of the process and its reaped
    children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after "pid (comm)": state ppid … utime(11) stime(12) cutime(13) cstime(14) … starttime(19)
    return (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[13])) / TICK,
            (int(fields[12]) + int(fields[14])) / TICK)


def _switches(pid: int) -> int:
    """Context switches of every thread of the process so far."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if "ctxt_switches:" in line:  # voluntary_… and nonvoluntary_…
                        total += int(line.split()[1])
    return total


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class CpuMeter:
    """CPU seconds (user and system) and context switches of everything that serves one
    cluster, by kind.

    ``watui <node>``: each node's process and its descendants; ``postgres``: the backends connected
    to the cluster's database (found by their process title, which names the database);
    ``redis``: its private ``redis-server``. A thread samples ``/proc`` every ``every`` seconds
    between :meth:`start` and :meth:`stop`, so a backend that comes and goes in between counts
    too (up to its last sample). PostgreSQL's shared processes (WAL writer, checkpointer) serve
    every database on the server, other work's too, and are left out.
    """

    roots: Callable[[], dict[int, str]]
    """The processes to follow, by kind (their descendants count as the same kind)."""
    database: str
    every: float = 0.25
    _first: dict[tuple[int, int], Usage] = field(default_factory=dict)
    _last: dict[tuple[int, int], tuple[str, Usage]] = field(default_factory=dict)
    _backends: dict[tuple[int, int], bool] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _ours(self, pid: int, started: int) -> bool:
        """Whether the process is a PostgreSQL backend connected to the cluster's database."""
        key = (pid, started)
        if key not in self._backends:
            line = _cmdline(pid)
            self._backends[key] = line.startswith("postgres:") and f" {self.database} " in line
        return self._backends[key]

    def _sample(self) -> dict[tuple[int, int], tuple[str, Usage]]:
        stats = {pid: s for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if (s := _stat(pid))}
        kinds = {pid: kind for pid, kind in self.roots().items() if pid in stats}
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (ppid, started, _, _) in stats.items():
            children[ppid].append(pid)
            if pid not in kinds and self._ours(pid, started):
                kinds[pid] = "postgres"
        todo = [pid for pid, kind in kinds.items() if kind != "postgres"]
        while todo:  # the nodes' descendants (engine hosts, QR drawers), if any
            pid = todo.pop()
            for child in children.get(pid, ()):
                if child not in kinds:
                    kinds[child] = kinds[pid]
                    todo.append(child)
        return {(pid, stats[pid][1]): (kind, Usage(stats[pid][2], stats[pid][3], _switches(pid)))
                for pid, kind in kinds.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._last.update(self._sample())

    def start(self) -> CpuMeter:
        self._first = {key: used for key, (_, used) in self._sample().items()}
        self._last = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Usage]:
        """What was used since :meth:`start`, by kind."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._last.update(self._sample())
        usage: dict[str, Usage] = defaultdict(Usage)
        for key, (kind, used) in self._last.items():
            usage[kind] += used - self._first.get(key, Usage())  # a process born since: all of it
        return dict(usage)


def cluster_roots(cluster: Cluster) -> Callable[[], dict[int, str]]:
    def roots() -> dict[int, str]:
        out = {node.proc.pid: f"watui {name}" for name, node in cluster.nodes.items() if node.proc is not None}
        if cluster.redis.proc is not None:
            out[cluster.redis.proc.pid] = "redis"
        return out

    return roots


def feed_counts(clients: dict[str, httpx.Client]) -> dict[str, float]:
    """Events the nodes' fan-out delivered so far, summed over the nodes, by where each came
    from: ``local`` (its own commits), ``redis`` (another node's, from the stream) and
    ``postgresql`` (another node's, read back to fill a gap)."""
    out: dict[str, float] = defaultdict(float)
    for client in clients.values():
        for line in client.get("/metrics").text.splitlines():
            match = FEED_LINE.match(line)
            if match:
                out[match[1]] += float(match[2])
    return dict(out)


def transactions(database: str) -> int:
    """Transactions PostgreSQL has counted for ``database`` (``pg_stat_database.xact_commit``,
    read-only ones too). Backends report them when idle, at most once a second: read it a
    second or so after the work stops."""
    return database_counters(database)[0]


def database_counters(database: str) -> tuple[int, int]:
    """(transactions, rows updated) PostgreSQL has counted for ``database``
    (``pg_stat_database``'s ``xact_commit`` and ``tup_updated``), as :func:`transactions`."""

    async def read() -> tuple[int, int]:
        conn = await asyncpg.connect(SERVER)
        try:
            row = await conn.fetchrow("SELECT xact_commit, tup_updated FROM pg_stat_database WHERE datname = $1",
                                      database)
            return int(row[0]), int(row[1])
        finally:
            await conn.close()

    return asyncio.run(read())


FEED_LINE = re.compile(r'watui_cluster_events_delivered_total\{source="(\w+)"\} (\S+)')


# ---------------------------------------------------------------------------- the event log


class EventWatch:
    """Follows the cluster's event log (``GET /v1/events/log``, one reader polling one node),
    so the benchmark's workers can wait for a session's status or a message's receipt
    without polling each session. The log is read from PostgreSQL, never drawn as QR codes
    as an SSE stream would, so watching costs the cluster the same whatever its size."""

    def __init__(self, client: httpx.Client, every: float = 0.05) -> None:
        self.client = client
        self.every = every
        self.polls = 0
        self.after = self._tail()
        self.seen: dict[str, set[str]] = defaultdict(set)
        """Per session: the statuses it reached."""
        self.receipts: dict[str, int] = defaultdict(int)
        """Count of each ``message_status`` value, over every session."""
        self._changed = threading.Condition()
        self._waiting = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="event-watch", daemon=True)

    def _page(self, after: int) -> list[dict[str, Any]]:
        self.polls += 1
        r = self.client.get("/v1/events/log", params={"after_id": after, "limit": 500})
        r.raise_for_status()
        events: list[dict[str, Any]] = r.json()["events"]
        return events

    def _tail(self) -> int:
        after = 0
        while events := self._page(after):
            after = events[-1]["id"]
        return after

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._changed:  # read the log only while a worker waits on it
                self._changed.wait_for(lambda: self._waiting > 0 or self._stop.is_set())
            try:
                events = self._page(self.after)
            except httpx.HTTPError:
                events = []
            if events:
                with self._changed:
                    for event in events:
                        if event["type"] == "status":  # {"from", "to", "reason"}
                            self.seen[event["session_id"]].add(event["payload"]["to"])
                        elif event["type"] == "message_status":  # {"message_id", "status", "chat"}
                            self.receipts[event["payload"]["status"]] += 1
                    self.after = events[-1]["id"]
                    self._changed.notify_all()
            if len(events) < 500:
                self._stop.wait(self.every)

    def __enter__(self) -> EventWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._stop.set()
            self._changed.notify_all()
        self._thread.join()

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
            try:
                if not self._changed.wait_for(check, timeout):
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            finally:
                self._waiting -= 1

    def reached(self, session_id: str, status: str, timeout: float = 60.0) -> None:
        self.wait(lambda: status in self.seen[session_id], f"{session_id} {status}", timeout)


def link_sessions(watch: EventWatch, clients: dict[str, httpx.Client],
                  indexes: Iterable[int], prefix: str, workers: int) -> list[tuple[str, str]]:
    """Create (with start) and link one session per index, on the nodes round-robin, ``workers``
    at a time: the create, the scan and the waits for ``qr_ready`` and ``connected``. Returns
    (node, session id) pairs, each session on the node it was created on (that node runs it)."""
    names = list(clients)

    def link(i: int) -> tuple[str, str]:
        node = names[i % len(names)]
        client = clients[node]
        r = client.post("/v1/sessions", json={"name": f"{prefix}{i}", "start": True})
        assert r.status_code == 201, r.text
        session_id: str = r.json()["session_id"]
        watch.reached(session_id, "qr_ready")
        r = client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
        assert r.status_code == 200, r.text
        watch.reached(session_id, "connected")
        return node, session_id

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(link, indexes))


def clients_for(cluster: Cluster) -> dict[str, httpx.Client]:
    # Above the most calls any benchmark keeps in flight, so one node gets them all at once.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    return {name: httpx.Client(base_url=node.base_url, timeout=30, limits=limits,
                               headers={"Authorization": f"Bearer {cluster.admin_key}"})
            for name, node in cluster.nodes.items()}
