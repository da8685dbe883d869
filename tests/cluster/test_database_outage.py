"""A PostgreSQL outage (issue 20, section 1), with real ``watui serve`` nodes over a
PostgreSQL server of the test's own, stopped for longer than a lease and started again: the
nodes answer what they can from memory, refuse writes with ``503 STORE_UNAVAILABLE`` and
``Retry-After`` (never 500), say ``degraded``, and keep every session running where it ran.
When the database is back, the holders renew before anyone claims: no session moves, none is
disconnected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .cluster_helpers import LEASE_TTL, Cluster, RedisServer, create_key, wait_until
from .private_pg import PrivatePostgres
from .test_multinode import create, link, log, metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OUTAGE = 3 * LEASE_TTL
"""Long enough for every lease to have expired by the database's clock when it is back."""


@pytest.fixture
def outage_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, PrivatePostgres]]:
    pg = PrivatePostgres().init().start()
    redis = RedisServer().start()
    c = Cluster(pg.dsn, redis, tmp_path)
    try:
        c.admin_key = create_key(pg.dsn, "admin", admin=True)
        for name in ("n1", "n2"):
            c.add(name)
        yield c, pg
    finally:
        c.stop()
        redis.stop()
        pg.destroy()


def health(c: Cluster, via: str) -> dict[str, object]:
    with httpx.Client(base_url=c.nodes[via].base_url, timeout=10) as client:
        r = client.get("/v1/health")
        assert r.status_code == 200, r.text
        data: dict[str, object] = r.json()
        return data


def test_a_database_outage_moves_no_session_and_answers_503_not_500(
    outage_cluster: tuple[Cluster, PrivatePostgres],
) -> None:
    cluster, pg = outage_cluster
    placed = {"n1": [create(cluster, "n1", f"a{i}") for i in range(3)],
              "n2": [create(cluster, "n2", f"b{i}") for i in range(3)]}
    for node, ids in placed.items():
        for session_id in ids:
            link(cluster, node, session_id)
    stranger = create_key(pg.dsn, "stranger")  # a key n1 has never seen, made before the outage
    last_event = {i: log(cluster, "n1", i)[-1]["id"] for ids in placed.values() for i in ids}

    pg.stop()
    try:
        for node in placed:
            wait_until(lambda node=node: health(cluster, node)["status"] == "degraded",  # type: ignore[misc]
                       f"{node} to say degraded", timeout=30)
        assert "database" in str(health(cluster, "n1")["problems"])
        with cluster.client("n1") as client:
            # Reads a node answers from memory: its sessions, with the key it knows.
            for session_id in placed["n1"]:
                r = client.get(f"/v1/sessions/{session_id}")
                assert r.status_code == 200 and r.json()["status"] == "connected", r.text
            # Writes, and reads that need the database: 503 with Retry-After, never 500.
            for r in (client.post("/v1/sessions", json={"name": "during"}),
                      client.get(f"/v1/sessions/{placed['n1'][0]}/messages")):
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "STORE_UNAVAILABLE" and r.headers["Retry-After"]
        with cluster.client("n1", stranger) as client:  # unknown here, and nobody to ask
            r = client.get("/v1/sessions")
            assert r.status_code == 503 and r.json()["error"]["code"] == "STORE_UNAVAILABLE", r.text
        time.sleep(OUTAGE)  # the outage itself: every lease expires by the database's clock
    finally:
        pg.start()

    for node in placed:
        wait_until(lambda node=node: health(cluster, node)["status"] == "ok",  # type: ignore[misc]
                   f"{node} to say ok", timeout=30)
    # The window in which a claim would move a session: a full TTL after the database is
    # back, and one scan more.
    time.sleep(LEASE_TTL + 2)
    for node, ids in placed.items():
        for session_id in ids:
            session = cluster.session("n1", session_id)
            assert (session["node_id"], session["status"]) == (node, "connected"), session
            after = [e for e in log(cluster, "n1", session_id) if e["id"] > last_event[session_id]]
            assert not [e for e in after if e["type"] == "status"], after
    assert sum(metric(cluster, n, "watui_cluster_takeovers_total") for n in placed) == 0
    with cluster.client("n2") as client:  # and writes work again
        r = client.post("/v1/sessions", json={"name": "after"})
        assert r.status_code == 201, r.text
