"""Cluster mode (issue 9): one node against three, and failover, on this machine.

    .venv/bin/python -m bench.bench_cluster [--sessions 300] [--kills 10]

Real ``watui serve`` subprocesses (simulated engine) over a fresh PostgreSQL database (on the
server ``WATUI_TEST_PG`` names, as in the tests) and a private ``redis-server``, driven over HTTP, as in tests/cluster/test_multinode.py:

1. **Sessions created/s**: ``--sessions`` creates (each starts its session: a lease claim, a
   ``created`` + ``status`` write, then QR codes), 24 in flight, spread round-robin over the
   nodes. One node is the baseline; the same load on three nodes, same run.
2. **Events/s**: events committed to the shared log during that burst (the log's ids tell).
3. **Failover**: ``--kills`` times, link 5 sessions on one node, ``kill -9`` it, time until
   every one of them is connected on another node, then start a replacement. p50/p99 over
   the kills, with ``--lease-ttl`` (default 4 s, the setting's default; takeover waits for
   the dead node's leases to expire, so it is about the TTL plus a second), after the same
   rounds with ``--baseline-ttl`` (10 s, the default before) as the baseline.

A 2-core machine runs three nodes, PostgreSQL and Redis on the same two cores, so three nodes
cannot be faster here than one; the figures show what the cluster costs, not what it scales to.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._util import Figure, load_average, percentile, print_table
from watui.config import Settings

# The multi-node tests' harness (nodes as subprocesses, a private redis-server, a fresh
# database) is the benchmark's too; tests/ is a directory of modules, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cluster.cluster_helpers import (
    LEASE_TTL,
    Cluster,
    RedisServer,
    create_key,
    fresh_database,
    wait_until,
)


def start_cluster(root: Path, nodes: int, lease_ttl: float = LEASE_TTL) -> tuple[Cluster, object]:
    dsn, drop = fresh_database()
    redis = RedisServer().start()
    cluster = Cluster(dsn, redis, root, env={"WATUI_MAX_ACTIVE_SESSIONS_PER_OWNER": "100000",
                                             "WATUI_LEASE_TTL": str(lease_ttl)})
    cluster.admin_key = create_key(dsn, "admin", admin=True)
    for i in range(nodes):
        cluster.add(f"n{i + 1}")
    return cluster, drop


def stop_cluster(cluster: Cluster, drop: object) -> None:
    cluster.stop()
    cluster.redis.stop()
    drop()  # type: ignore[operator]


def last_event_id(cluster: Cluster) -> int:
    via = next(iter(n for n, p in cluster.nodes.items() if p.proc and p.proc.poll() is None))
    with cluster.client(via) as client:
        after = 0
        while True:
            events = client.get("/v1/events/log", params={"after_id": after, "limit": 500}).json()["events"]
            if not events:
                return after
            after = events[-1]["id"]


def burst(cluster: Cluster, sessions: int) -> tuple[float, float]:
    """Sessions created/s and events/s for ``sessions`` creates spread over the nodes."""
    names = list(cluster.nodes)
    clients = {n: cluster.client(n) for n in names}
    first = last_event_id(cluster)

    def create(i: int) -> int:
        r = clients[names[i % len(names)]].post("/v1/sessions", json={"name": f"b{i}", "start": True})
        return r.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(create, range(sessions)))
    seconds = time.perf_counter() - started
    assert codes.count(201) == sessions, {c: codes.count(c) for c in set(codes)}
    events = last_event_id(cluster) - first
    for c in clients.values():
        c.close()
    return sessions / seconds, events / seconds


def one_kill(cluster: Cluster, victim: str, round_: int) -> float:
    """Link 5 sessions on ``victim``, kill -9 it, and time until all run elsewhere."""
    survivor = next(n for n in cluster.nodes if n != victim)
    ids: list[str] = []
    with cluster.client(victim) as client:
        for i in range(5):
            r = client.post("/v1/sessions", json={"name": f"f{round_}-{i}", "start": True})
            ids.append(r.json()["session_id"])
        for i in ids:
            wait_until(lambda i=i: cluster.session(victim, i)["status"] == "qr_ready", "qr")
            client.post(f"/v1/sessions/{i}/simulate", json={"action": "scan"})
        for i in ids:
            wait_until(lambda i=i: cluster.session(victim, i)["status"] == "connected", "linked")

    def moved() -> bool:
        sessions = [cluster.session(survivor, i) for i in ids]
        return all(s["status"] == "connected" and s["node_id"] not in (None, victim) for s in sessions)

    killed = time.perf_counter()
    cluster.nodes[victim].kill()
    wait_until(moved, "takeover", timeout=60, every=0.05)
    return time.perf_counter() - killed


def failover(root: Path, kills: int, lease_ttl: float) -> list[float]:
    cluster, drop = start_cluster(root, 3, lease_ttl)
    times: list[float] = []
    try:
        for k in range(kills):
            victim = next(iter(cluster.nodes))
            times.append(one_kill(cluster, victim, k))
            print(f"  kill {k + 1}: {times[-1]:.2f} s", flush=True)
            del cluster.nodes[victim]
            cluster.add(f"r{k + 1}")  # a replacement node
    finally:
        stop_cluster(cluster, drop)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease-ttl", type=float, default=Settings.model_fields["lease_ttl"].default,
                        help="lease TTL for the failover rounds [the setting's default]")
    parser.add_argument("--baseline-ttl", type=float, default=10.0,
                        help="the same failover rounds with this TTL first, as the baseline (0: skip)"
                             " [10 s, the default before issue 20]")
    parser.add_argument("--skip-burst", action="store_true", help="only the failover rounds")
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for nodes in () if args.skip_burst else (1, 3):
            cluster, drop = start_cluster(Path(tmp) / f"c{nodes}", nodes)
            try:
                rates[nodes] = burst(cluster, args.sessions)
            finally:
                stop_cluster(cluster, drop)
            print(f"  {nodes} node(s): {rates[nodes][0]:.0f} sessions/s, {rates[nodes][1]:.0f} events/s", flush=True)
        baseline = failover(Path(tmp) / "baseline", args.kills, args.baseline_ttl) if args.baseline_ttl else []
        kills = failover(Path(tmp) / "failover", args.kills, args.lease_ttl)
    figures = []
    if rates:
        (s1, e1), (s3, e3) = rates[1], rates[3]
        figures += [
            Figure("sessions created/s, 1 node (baseline)", s1, "/s"),
            Figure("sessions created/s, 3 nodes", s3, "/s", note=f"{s3 / s1:.2f}x of one node"),
            Figure("events/s, 1 node (baseline)", e1, "/s"),
            Figure("events/s, 3 nodes", e3, "/s", note=f"{e3 / e1:.2f}x of one node"),
        ]
    if baseline:
        figures += [
            Figure(f"failover p50, lease TTL {args.baseline_ttl:g} s (baseline)", percentile(baseline, 50),
                   "s", digits=2),
            Figure("failover p99 (baseline)", percentile(baseline, 99), "s", digits=2),
        ]
    ratio = (lambda q: f"{percentile(kills, q) / percentile(baseline, q):.2f}x of the baseline") if baseline \
        else (lambda q: "")
    figures += [
        Figure(f"failover p50 ({len(kills)} kills, lease TTL {args.lease_ttl:g} s)", percentile(kills, 50),
               "s", goal=15, digits=2, note=ratio(50)),
        Figure("failover p99", percentile(kills, 99), "s", goal=6, digits=2, note=ratio(99)),
    ]
    print_table("cluster: one node vs three (same run)", figures)


if __name__ == "__main__":
    main()
