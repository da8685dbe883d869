"""One node id, one process (issue 20, section 3), with real ``watui serve`` processes over one
PostgreSQL database and one Redis: a second process started with a live node's id exits with
status 2 naming it, and the node keeps every lease; a node killed with -9 and restarted at once
under the same id resumes its sessions as soon as its old instance's heartbeat is stale, long
before the old leases would have expired."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from watui.cluster.nodes import STALE_AFTER

from .cluster_helpers import Cluster, free_port, running_cluster, wait_until
from .test_multinode import create, link, log, metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TTL = 10.0
"""The default (and longest) lease TTL: a restart that waited out its old leases would take
that long; one that sees its old instance dead takes about :data:`STALE_AFTER`."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, ("n1", "n2"), env={"WATUI_LEASE_TTL": str(TTL)}) as c:
        yield c


def leases(dsn: str) -> dict[str, tuple[str, str, int, bool]]:
    """session id -> (node id, instance, token, live), straight from PostgreSQL."""

    async def go() -> dict[str, tuple[str, str, int, bool]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT session_id, node_id, instance, token, expires_at > now() FROM leases")
        finally:
            await conn.close()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    return asyncio.run(go())


def test_a_second_process_with_a_live_node_id_exits_2_naming_it_and_takes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    ids = [create(cluster, "n1", f"s{i}") for i in range(6)]
    for i in ids:
        link(cluster, "n1", i)
    before = leases(cluster.dsn)
    assert {i: before[i][0] for i in ids} == dict.fromkeys(ids, "n1") and all(before[i][3] for i in ids)
    (instance,) = {before[i][1] for i in ids}

    port = free_port()
    env = {**os.environ, "WATUI_DATABASE_URL": cluster.dsn, "WATUI_REDIS_URL": cluster.redis.url,
           "WATUI_NODE_ID": "n1", "WATUI_LEASE_TTL": str(TTL)}
    started = time.monotonic()
    twin = subprocess.run(
        [sys.executable, "-m", "watui", "serve", "--engine", "simulated", "--port", str(port),
         "--data-dir", str(tmp_path / "twin")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    took = time.monotonic() - started
    print(f"\nsecond process with n1's id: exit {twin.returncode} after {took:.1f} s: {twin.stderr.strip()}")
    assert twin.returncode == 2, twin.stdout + twin.stderr
    named = [line for line in twin.stderr.splitlines() if "in use by another live process" in line]
    assert len(named) == 1, twin.stderr
    assert "'n1'" in named[0] and instance in named[0] and cluster.nodes["n1"].base_url in named[0]
    assert f"pid {cluster.nodes['n1'].proc.pid}" in named[0]  # type: ignore[union-attr]
    assert "Traceback" not in twin.stderr and "watui serving" not in twin.stdout

    # n1 keeps every lease: same instance, same token, still live, renewed after the twin left.
    after = leases(cluster.dsn)
    assert {i: after[i][:3] for i in ids} == {i: before[i][:3] for i in ids}
    wait_until(lambda: metric(cluster, "n1", "watui_cluster_leases") == len(ids), "n1's leases", timeout=5)

    async def renewed_since(mark: float) -> bool:
        conn = await asyncpg.connect(cluster.dsn)
        try:
            return bool(await conn.fetchval(
                "SELECT bool_and(expires_at > to_timestamp($1) + $2 * interval '1 second') FROM leases",
                mark, TTL - 1))
        finally:
            await conn.close()

    mark = time.time()
    wait_until(lambda: asyncio.run(renewed_since(mark)), "n1 to renew its leases after the twin", timeout=TTL)
    assert {i: leases(cluster.dsn)[i][:3] for i in ids} == {i: before[i][:3] for i in ids}
    for i in ids:
        s = cluster.session("n2", i)
        assert s["status"] == "connected" and s["node_id"] == "n1", s
    assert metric(cluster, "n2", "watui_cluster_takeovers_total") == 0


def test_a_node_restarted_at_once_after_kill_9_resumes_its_sessions_well_before_the_ttl(
    cluster: Cluster,
) -> None:
    ids = [create(cluster, "n1", f"r{i}") for i in range(6)]
    jids = {i: link(cluster, "n1", i)["jid"] for i in ids}
    old = leases(cluster.dsn)
    last_before = max(e["id"] for i in ids for e in log(cluster, "n2", i))
    n1 = cluster.nodes["n1"]
    killed_at = time.monotonic()
    n1.kill()
    n1.start()  # at once, same node id, same port
    restarted_in = time.monotonic() - killed_at

    def resumed() -> bool:
        now = leases(cluster.dsn)
        return all(
            now[i][0] == "n1" and now[i][1] != old[i][1] and now[i][3]
            and (s := cluster.session("n2", i))["status"] == "connected" and s["node_id"] == "n1"
            for i in ids
        )

    wait_until(resumed, "the restarted n1 to resume its sessions", timeout=2 * TTL, every=0.05)
    took = time.monotonic() - killed_at
    print(f"\nkill -9 + restart ({restarted_in:.1f} s to serve) -> all {len(ids)} sessions connected on"
          f" the new n1: {took:.1f} s (lease TTL {TTL:g} s, stale after {STALE_AFTER:g} s)")
    assert took < TTL - 3, f"{took:.1f} s: waited for the old leases"
    new = leases(cluster.dsn)
    assert all(new[i][2] > old[i][2] for i in ids), "adopted with new tokens"
    # The cluster view names the process that runs n1 now: the instance on its leases.
    with cluster.client("n2") as admin:
        nodes = {n["node_id"]: n for n in admin.get("/v1/cluster").json()["nodes"]}
    assert nodes["n1"]["instance"] == new[ids[0]][1] != old[ids[0]][1]
    assert nodes["n2"]["instance"] and nodes["n2"]["instance"] != nodes["n1"]["instance"]
    assert metric(cluster, "n2", "watui_cluster_takeovers_total") == 0, "n2 handled none of them"
    assert metric(cluster, "n1", "watui_cluster_takeovers_total") == len(ids)
    for i in ids:
        after = [e for e in log(cluster, "n2", i) if e["id"] > last_before]
        assert not [e for e in after if e["type"] == "qr"], "a linked session needed a new QR code"
        lost = [e for e in after if (e.get("payload") or {}).get("reason") == "node_lost"]
        assert len(lost) == 1, after  # parked once, resumed once: handled by one node only
        assert cluster.session("n2", i)["jid"] == jids[i]
    # Nothing moves afterwards either (the old leases' expiry changes nothing).
    time.sleep(1.0)
    assert {i: leases(cluster.dsn)[i][:3] for i in ids} == {i: new[i][:3] for i in ids}
