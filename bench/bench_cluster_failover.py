"""Cluster mode (issue 9): sessions created/s on one node against three, and failover.

1. **Sessions created/s**: creates (each starts its session: a lease claim, a ``created`` +
   ``status`` write, then QR codes), 24 in flight, spread round-robin over the nodes. One node
   is the baseline; the same load on three nodes, same run.
2. **Events/s**: events committed to the shared log during that burst (the log's ids tell).
3. **Failover**: link 5 sessions on one node, ``kill -9`` it, time until every one of them is
   connected on another node, then start a replacement; over several kills.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._cluster import Cluster, start_cluster, wait_until


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


def bursts(root: Path, sessions: int) -> dict[int, tuple[float, float]]:
    rates = {}
    for nodes in (1, 3):
        running = start_cluster(root / f"c{nodes}", nodes)
        try:
            rates[nodes] = burst(running.cluster, sessions)
        finally:
            running.stop()
        print(f"  {nodes} node(s): {rates[nodes][0]:.0f} sessions/s, {rates[nodes][1]:.0f} events/s", flush=True)
    return rates


def one_kill(cluster: Cluster, victim: str, round_: int) -> float:
    """Link 5 sessions on ``victim``, kill -9 it, and time until all run elsewhere."""
    survivor = next(n for n in cluster.nodes if n != victim)
    ids: list[str] = []
    with cluster.client(victim) as client:
        for i in range(5):
            r = client.post("/v1/sessions", json={"name": f"f{round_}-{i}", "start": True})
            ids.append(r.json()["session_id"])
        for sid in ids:
            wait_until(lambda sid=sid: cluster.session(victim, sid)["status"] == "qr_ready", "qr")
            client.post(f"/v1/sessions/{sid}/simulate", json={"action": "scan"})
        for sid in ids:
            wait_until(lambda sid=sid: cluster.session(victim, sid)["status"] == "connected", "linked")

    def moved() -> bool:
        sessions = [cluster.session(survivor, i) for i in ids]
        return all(s["status"] == "connected" and s["node_id"] not in (None, victim) for s in sessions)

    killed = time.perf_counter()
    cluster.nodes[victim].kill()
    wait_until(moved, "takeover", timeout=60, every=0.05)
    return time.perf_counter() - killed


def failover(root: Path, kills: int, lease_ttl: float) -> list[float]:
    running = start_cluster(root, 3, lease_ttl)
    cluster = running.cluster
    times: list[float] = []
    try:
        for k in range(kills):
            victim = next(iter(cluster.nodes))
            times.append(one_kill(cluster, victim, k))
            print(f"  kill {k + 1}: {times[-1]:.2f} s", flush=True)
            del cluster.nodes[victim]
            cluster.add(f"r{k + 1}")  # a replacement node
    finally:
        running.stop()
    return times
