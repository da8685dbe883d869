"""Three real ``watui serve`` nodes over one PostgreSQL database and one Redis (issue 9).

Each test gets a fresh database and its own ``redis-server``; the nodes are subprocesses on
loopback ports, killed (-9), stopped (SIGSTOP), resumed and terminated for real. Leases last
``LEASE_TTL`` seconds here (the default is 10).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from httpx_sse import connect_sse

from .cluster_helpers import (
    LEASE_TTL,
    Cluster,
    create_key,
    running_cluster,
    signal_node,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, ("n1", "n2", "n3")) as c:
        yield c


def create(c: Cluster, via: str, name: str, key: str | None = None) -> str:
    with c.client(via, key) as client:
        r = client.post("/v1/sessions", json={"name": name, "start": True})
        assert r.status_code == 201, r.text
        return str(r.json()["session_id"])


def link(c: Cluster, via: str, session_id: str) -> dict[str, Any]:
    """Scan the session's QR code (through ``via``, whichever node runs it) and wait until
    it is connected."""
    wait_until(lambda: c.session(via, session_id)["status"] == "qr_ready", f"{session_id} qr_ready")
    with c.client(via) as client:
        r = client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
        assert r.status_code == 200, r.text
    return wait_until(
        lambda: (s := c.session(via, session_id))["status"] == "connected" and s, f"{session_id} connected"
    )


def log(c: Cluster, via: str, session_id: str) -> list[dict[str, Any]]:
    with c.client(via) as client:
        r = client.get("/v1/events/log", params={"session_id": session_id, "limit": 500})
        r.raise_for_status()
        events: list[dict[str, Any]] = r.json()["events"]
        return events


def test_create_on_one_node_scan_on_another_list_on_a_third(cluster: Cluster) -> None:
    session_id = create(cluster, "n1", "alice")
    assert cluster.session("n1", session_id)["node_id"] == "n1"
    # n2 does not run it: the scan is routed to n1 and answered as n1 would.
    connected = link(cluster, "n2", session_id)
    assert connected["node_id"] == "n1"

    def listed_on_n3() -> dict[str, Any] | None:
        with cluster.client("n3") as client:
            sessions = client.get("/v1/sessions").json()["sessions"]
        return next((s for s in sessions if s["id"] == session_id and s["status"] == "connected"), None)

    seen = wait_until(listed_on_n3, "n3 to list the session connected", timeout=10)
    assert seen["node_id"] == "n1" and seen["jid"] == connected["jid"]
    with cluster.client("n1") as client:
        cluster_view = client.get("/v1/cluster").json()
    assert {n["node_id"] for n in cluster_view["nodes"]} == {"n1", "n2", "n3"}
    assert cluster_view["lease_ttl"] == LEASE_TTL
    assert metric(cluster, "n1", "watui_cluster_leases") == 1
    assert metric(cluster, "n3", "watui_cluster_redis_connected") == 1
    assert metric(cluster, "n3", "watui_cluster_events_delivered_total", source="redis") > 0
    assert metric(cluster, "n3", "watui_cluster_stream_reads_total") > 0


def metric(c: Cluster, via: str, name: str, **labels: str) -> float:
    """One sample of the node's ``GET /metrics``, read with prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with c.client(via) as client:
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in {via}'s /metrics")


def test_kill_9_every_session_comes_back_on_the_others_without_a_new_qr(cluster: Cluster) -> None:
    ids = [create(cluster, "n1", f"s{i}") for i in range(4)]
    jids = {i: link(cluster, "n1", i)["jid"] for i in ids}
    last_before = max(e["id"] for i in ids for e in log(cluster, "n2", i))
    killed_at = time.monotonic()
    cluster.nodes["n1"].kill()

    def all_back() -> bool:
        return all(
            (s := cluster.session("n2", i))["status"] == "connected" and s["node_id"] in ("n2", "n3")
            for i in ids
        )

    wait_until(all_back, "every session connected on n2 or n3", timeout=30)
    took = time.monotonic() - killed_at
    print(f"\nkill -9 -> all {len(ids)} sessions connected elsewhere: {took:.1f} s (lease TTL {LEASE_TTL} s)")
    assert took < 15
    for i in ids:
        after = [e for e in log(cluster, "n3", i) if e["id"] > last_before]
        assert not [e for e in after if e["type"] == "qr"], "a linked session needed a new QR code"
        assert cluster.session("n3", i)["jid"] == jids[i]
    takeovers = sum(metric(cluster, n, "watui_cluster_takeovers_total") for n in ("n2", "n3"))
    assert takeovers == len(ids)


def test_a_paused_node_loses_its_sessions_and_cannot_write_for_them(cluster: Cluster) -> None:
    ids = [create(cluster, "n1", f"p{i}") for i in range(3)]
    for i in ids:
        link(cluster, "n1", i)
    n1 = cluster.nodes["n1"]
    signal_node(n1, signal.SIGSTOP)
    try:
        wait_until(
            lambda: all(cluster.session("n2", i)["node_id"] in ("n2", "n3") for i in ids)
            and all(cluster.session("n2", i)["status"] == "connected" for i in ids),
            "n2/n3 to take n1's sessions over", timeout=30,
        )
    finally:
        signal_node(n1, signal.SIGCONT)
    # n1 wakes up believing it runs them: its lease renewal (or its first write) is refused
    # and it lets them go.
    wait_until(lambda: "dropping it here" in "".join(n1.output), "n1 to drop the sessions", timeout=15)
    time.sleep(LEASE_TTL)
    for i in ids:
        session = cluster.session("n3", i)
        assert session["status"] == "connected" and session["node_id"] in ("n2", "n3"), session
    with cluster.client("n1") as client:
        nodes = {n["node_id"]: n for n in client.get("/v1/cluster").json()["nodes"]}
    assert nodes["n1"]["sessions"] == 0


def test_sigterm_hands_sessions_over_within_5_s(cluster: Cluster) -> None:
    ids = [create(cluster, "n2", f"t{i}") for i in range(3)]
    for i in ids:
        link(cluster, "n2", i)
    started = time.monotonic()
    assert cluster.nodes["n2"].terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    wait_until(
        lambda: all(
            (s := cluster.session("n1", i))["status"] == "connected" and s["node_id"] in ("n1", "n3")
            for i in ids
        ),
        "n2's sessions connected on n1 or n3", timeout=15,
    )
    took = time.monotonic() - started
    print(f"\nSIGTERM -> all {len(ids)} sessions running elsewhere: {took:.1f} s")
    assert took < 5


def read_stream(c: Cluster, via: str, *, last_id: int | None, count: int) -> list[int]:
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    ids: list[int] = []
    with c.client(via) as client, connect_sse(client, "GET", "/v1/events", headers=headers) as source:
        assert source.response.status_code == 200, source.response.read()
        for event in source.iter_sse():
            if event.data and event.id:
                ids.append(int(event.id))
                if len(ids) >= count:
                    break
    return ids


def test_a_stream_resumed_on_another_node_has_no_gap_and_no_duplicate(cluster: Cluster) -> None:
    # Events are written on all three nodes while a reader moves from node to node.
    stop = threading.Event()

    def churn(via: str) -> None:
        n = 0
        while not stop.is_set():
            create(cluster, via, f"{via}-{n}")
            n += 1

    with ThreadPoolExecutor(3) as pool:
        for via in ("n1", "n2", "n3"):
            pool.submit(churn, via)
        try:
            seen = read_stream(cluster, "n1", last_id=0, count=10)
            for via in ("n2", "n3", "n1", "n3"):
                seen += read_stream(cluster, via, last_id=seen[-1], count=10)
        finally:
            stop.set()
    assert seen == sorted(set(seen)), "duplicates or out of order"
    with cluster.client("n2") as client:
        stored = [e["id"] for e in client.get("/v1/events/log", params={"after_id": 0, "limit": 500}).json()["events"]]
    assert seen == [i for i in stored if seen[0] <= i <= seen[-1]], "a gap"


def test_per_owner_limit_holds_across_nodes(cluster: Cluster) -> None:
    key = create_key(cluster.dsn, "acme")
    names = [(f"n{1 + i % 3}", f"c{i}") for i in range(50)]

    def attempt(via_name: tuple[str, str]) -> int:
        via, name = via_name
        with cluster.client(via, key) as client:
            return client.post("/v1/sessions", json={"name": name, "start": True}).status_code

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(attempt, names))
    assert codes.count(201) == 5 and codes.count(409) == 45, codes
    with cluster.client("n3", key) as client:
        sessions = client.get("/v1/sessions", params={"limit": 100}).json()["sessions"]
    running = [s for s in sessions if s["status"] not in ("stopped", "failed")]
    assert len(running) == 5


class ReceiverThread:
    """A webhook receiver (tests/webhook_receiver.py) on a loop of its own, for sync tests."""

    def __init__(self) -> None:
        import asyncio

        from webhook_receiver import Receiver

        self.healthy = False
        self.receiver = Receiver.reserve(respond=lambda request, n: 204 if self.healthy else 503)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(10)

    def close(self) -> None:
        import asyncio

        async def stop() -> None:
            await self.receiver.stop()
            others = asyncio.all_tasks() - {asyncio.current_task()}
            for task in others:  # connections still open
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def attempts(self) -> list[tuple[str, str]]:
        """(webhook-id, event type) of every request so far."""
        return [(r.webhook_id, str(r.json().get("type"))) for r in list(self.receiver.requests)]


def test_webhooks_outlive_the_node_that_queued_them(cluster: Cluster) -> None:
    hooks = ReceiverThread()
    try:
        with cluster.client("n1") as client:
            r = client.post("/v1/sessions", json={"name": "hooked", "start": True,
                                                  "settings": {"webhook_url": hooks.receiver.url()}})
            assert r.status_code == 201, r.text
        # The receiver fails n1's first attempts; then n1 dies with its deliveries pending.
        wait_until(lambda: hooks.attempts(), "n1's first delivery attempt", timeout=20)
        cluster.nodes["n1"].kill()
        failed = {webhook_id for webhook_id, _ in hooks.attempts()}
        hooks.healthy = True
        before = len(hooks.attempts())

        def redelivered() -> set[str]:
            later = hooks.attempts()[before:]
            return {webhook_id for webhook_id, _ in later} & failed

        again = wait_until(redelivered, "another node to deliver n1's pending webhooks", timeout=60)
        # The same webhook-id: a receiver that saw the failed attempt can tell it is a retry.
        assert again <= failed
    finally:
        hooks.close()


def test_nodes_keep_working_through_a_redis_restart(cluster: Cluster) -> None:
    first = create(cluster, "n1", "before")
    link(cluster, "n1", first)
    cluster.redis.stop()
    during = create(cluster, "n2", "during")
    link(cluster, "n2", during)
    # n3 still sees n2's changes, from PostgreSQL alone.
    wait_until(lambda: cluster.session("n3", during)["status"] == "connected", "n3 to see it", timeout=10)
    cluster.redis.start()
    after = create(cluster, "n3", "after")
    link(cluster, "n3", after)
    wait_until(lambda: cluster.session("n1", after)["status"] == "connected", "n1 to see it", timeout=10)
    with cluster.client("n2") as client:
        stored = [e["id"] for e in client.get("/v1/events/log", params={"after_id": 0, "limit": 500}).json()["events"]]
    seen = read_stream(cluster, "n1", last_id=0, count=len(stored))
    assert seen == stored


def test_an_owner_that_does_not_answer_gives_503_node_unavailable(cluster: Cluster) -> None:
    cluster.add("n4", WATUI_ROUTE_TIMEOUT="0.5")
    session_id = create(cluster, "n1", "stuck")
    wait_until(lambda: cluster.session("n1", session_id)["status"] == "qr_ready", "qr_ready")
    signal_node(cluster.nodes["n1"], signal.SIGSTOP)
    try:
        started = time.monotonic()
        with cluster.client("n4") as client:
            r = client.post(f"/v1/sessions/{session_id}/stop")
        took = time.monotonic() - started
    finally:
        signal_node(cluster.nodes["n1"], signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "NODE_UNAVAILABLE" and int(r.headers["Retry-After"]) > 0
    assert took < 2
    # The call reached n1 before it froze, so n1 carries it out once it runs again: a 503
    # NODE_UNAVAILABLE means "no answer in time", not "not done" (docs/cluster.md).
    wait_until(lambda: cluster.session("n4", session_id)["status"] == "stopped", "n1 to stop it", timeout=10)
    with cluster.client("n4") as client:
        again = client.post(f"/v1/sessions/{session_id}/stop")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_TRANSITION"


async def test_the_console_attached_to_any_node_shows_every_session_and_its_node(cluster: Cluster) -> None:
    from console.attach_helpers import attach, wait_for

    from watui.widgets.sessions_table import SessionsTable

    placed = {create(cluster, "n1", "on-one"): "n1", create(cluster, "n2", "on-two"): "n2"}
    service, app = await attach(cluster.nodes["n3"].base_url, cluster.admin_key)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.screen.query_one(SessionsTable)

            def shown() -> bool:
                return {s.id: s.node_id for s in table.rows} == placed

            await wait_for(pilot, shown, "both sessions with their nodes")
            assert table.clustered  # the NODE column is on
            screen = app.export_screenshot()
            assert "NODE" in screen and "n1" in screen and "n2" in screen
    finally:
        await service.aclose()
