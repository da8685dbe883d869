"""Where sessions run (issue 20, section 4), with real ``watui serve`` nodes: a dead node's
sessions spread over the survivors by room; a session no survivor has room for says it runs
nowhere (``node_lost``, no node), sends to it are ``503 NODE_UNAVAILABLE``, and it runs again
as soon as a node has room; a node that joins takes its share gradually (a setting turns it
off)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster_helpers import (
    Cluster,
    running_cluster,
    signal_node,
    wait_until,
)
from .test_multinode import create, link, log, metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def empty_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as c:
        yield c


def sessions(c: Cluster, via: str) -> list[dict[str, Any]]:
    with c.client(via) as client:
        listed: list[dict[str, Any]] = client.get("/v1/sessions", params={"limit": 100}).json()["sessions"]
        return listed


def placed(c: Cluster, via: str) -> Counter[str | None]:
    return Counter(s["node_id"] for s in sessions(c, via) if s["status"] == "connected")


def test_a_dead_nodes_sessions_spread_over_the_survivors(empty_cluster: Cluster) -> None:
    c = empty_cluster
    for name in ("n1", "n2", "n3"):
        c.add(name)
    ids = [create(c, "n1", f"s{i}") for i in range(12)]
    for session_id in ids:
        link(c, "n1", session_id)
    signal_node(c.nodes["n1"], signal.SIGKILL)
    def all_moved() -> Counter[str | None] | None:
        counts = placed(c, "n2")  # one reading: the sessions move between two
        return counts if sum(counts.values()) == 12 and counts["n1"] == 0 else None

    counts = wait_until(all_moved, "every session connected on n2 or n3", timeout=40)
    print(f"\ntakeovers spread: {dict(counts)}")
    assert counts["n2"] >= 4 and counts["n3"] >= 4, counts  # not one survivor taking all 12


def test_sessions_no_node_has_room_for_run_nowhere_and_say_so_until_one_has(empty_cluster: Cluster) -> None:
    c = empty_cluster
    c.add("n1")
    c.add("n2", WATUI_NODE_CAPACITY="2")
    ids = [create(c, "n1", f"s{i}") for i in range(5)]
    for session_id in ids:
        link(c, "n1", session_id)
    qr_before = {i: sum(e["type"] == "qr" for e in log(c, "n1", i)) for i in ids}
    signal_node(c.nodes["n1"], signal.SIGKILL)

    def settled() -> list[dict[str, Any]] | None:
        now = sessions(c, "n2")
        nowhere = [s for s in now if s["status"] == "disconnected" and s["node_id"] is None]
        running = [s for s in now if s["status"] == "connected" and s["node_id"] == "n2"]
        return nowhere if len(running) == 2 and len(nowhere) == 3 else None

    nowhere = wait_until(settled, "2 sessions on n2 and 3 that run nowhere", timeout=40)
    assert {s["reason"] for s in nowhere} == {"node_lost"}, nowhere
    assert metric(c, "n2", "watui_cluster_stranded_total") == 3
    with c.client("n2") as client:
        r = client.post(f"/v1/sessions/{nowhere[0]['id']}/messages", json={"to": "+14155550123", "text": "hi"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "NODE_UNAVAILABLE", r.text
        assert r.headers["Retry-After"]
        assert r.json()["error"]["details"]["node_id"] is None
    # A node with room joins: the waiting sessions run there, linked as they were (no new QR).
    c.add("n3")
    wait_until(lambda: placed(c, "n2")["n3"] == 3, "the 3 waiting sessions connected on n3", timeout=40)
    for i in ids:
        assert sum(e["type"] == "qr" for e in log(c, "n2", i)) == qr_before[i], "a linked session needed a new QR"


@pytest.mark.parametrize("rate", ["5", "0"])
def test_a_node_that_joins_takes_its_share_gradually_unless_rebalancing_is_off(
    empty_cluster: Cluster, rate: str,
) -> None:
    c = empty_cluster
    c.env["WATUI_REBALANCE_RATE"] = rate
    c.add("n1")
    ids = [create(c, "n1", f"s{i}") for i in range(10)]
    for session_id in ids:
        link(c, "n1", session_id)
    qr_before = {i: sum(e["type"] == "qr" for e in log(c, "n1", i)) for i in ids}
    c.add("n2")
    if rate == "0":
        wait_until(lambda: len(_nodes(c)) == 2, "n2 to join")
        # Some scans of n1's with n2 there and nothing to move: n1 keeps all ten.
        wait_until(lambda: _heartbeats_seen(c) >= 3, "three more heartbeats", timeout=20)
        assert placed(c, "n2") == Counter({"n1": 10})
        return
    wait_until(lambda: placed(c, "n2") == Counter({"n1": 5, "n2": 5}), "5 and 5", timeout=40)
    for i in ids:  # moved as a drain moves them: reconnected with their link, no new code
        assert sum(e["type"] == "qr" for e in log(c, "n1", i)) == qr_before[i]
    assert metric(c, "n1", "watui_cluster_handoffs_total") == 5


def _nodes(c: Cluster) -> list[dict[str, Any]]:
    with c.client("n1") as client:
        nodes: list[dict[str, Any]] = client.get("/v1/cluster").json()["nodes"]
        return nodes


_seen: dict[str, str] = {}


def _heartbeats_seen(c: Cluster) -> int:
    """How many distinct heartbeats of n2 the test has seen (each a second apart)."""
    for node in _nodes(c):
        if node["node_id"] == "n2":
            _seen.setdefault(node["heartbeat_at"], node["node_id"])
    return len(_seen)
