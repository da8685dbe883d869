"""A routed call's added latency (issue 20): the same call for a session sent to the node that
runs it (answered there) and to another node (forwarded by ``RoutingMiddleware``, answered by
the owner, passed back), same run, one call at a time.

Three nodes, one linked session on each. Call ``k`` goes to session ``k % 3``: once to its own
node and once to the next node (which first alternates), so both series see the same load. The call is a send
(``POST /v1/sessions/{id}/messages``, which must run where the session runs; a ``GET`` of
the session is answered from memory by any node and is never routed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._cluster import TO, EventWatch, clients_for, link_sessions, start_cluster
from bench._util import Figure, load_average, percentile
from watui.config import Settings

WARM_UP = 20
"""Calls of each kind before timing: connections open, the route's code paths warm."""


@dataclass
class Latencies:
    local: list[float]
    routed: list[float]
    load: str


def routing(root: Path, calls: int) -> Latencies:
    running = start_cluster(root, 3, lease_ttl=Settings.model_fields["lease_ttl"].default)
    clients = clients_for(running.cluster)
    names = list(clients)
    try:
        with EventWatch(clients["n1"]) as watch:
            linked = link_sessions(watch, clients, range(len(names)), "r", len(names))
        local: list[float] = []
        routed: list[float] = []

        def send(via: httpx.Client, session_id: str, k: int) -> float:
            started = time.perf_counter()
            r = via.post(f"/v1/sessions/{session_id}/messages", json={"to": TO, "text": f"routed {k}"})
            seconds = time.perf_counter() - started
            assert r.status_code == 201, r.text
            return seconds

        for k in range(-WARM_UP, calls):
            node, session_id = linked[k % len(linked)]
            other = names[(names.index(node) + 1) % len(names)]
            if k % 2:  # which goes first alternates
                there = send(clients[other], session_id, k)
                here = send(clients[node], session_id, k)
            else:
                here = send(clients[node], session_id, k)
                there = send(clients[other], session_id, k)
            if k >= 0:
                local.append(here)
                routed.append(there)
        return Latencies(local, routed, load_average())
    finally:
        for client in clients.values():
            client.close()
        running.stop()


def figures(result: Latencies) -> list[Figure]:
    local, routed = result.local, result.routed
    out = []
    for q in (50, 99):
        lo, ro = percentile(local, q) * 1000, percentile(routed, q) * 1000
        out += [
            Figure(f"send p{q}, to the node that runs it (baseline)", lo, "ms", digits=2),
            Figure(f"send p{q}, to another node (routed)", ro, "ms", digits=2, note=f"{ro / lo:.2f}x of local"),
            Figure(f"added by routing, p{q} (routed - local)", ro - lo, "ms", digits=2,
                   note=f"{len(local)} calls each, load {result.load}" if q == 50 else ""),
        ]
    return out
