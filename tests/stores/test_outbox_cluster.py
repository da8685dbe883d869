"""The webhook outbox in a cluster: several nodes (each its own PostgresStore, so its own pool,
on one database) run dispatchers over one outbox. Each row goes out from one node at a time,
and a node that dies mid-send leaves its rows to another node once its claims expire, with the
same ``webhook-id``."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sql_helpers import FAST, drained, eventually, hooked_session, new_event, settings_for
from standardwebhooks import Webhook
from webhook_receiver import Receiver

from watui.clock import RealClock
from watui.stores.postgres import PostgresStore
from watui.webhooks import DeliveryStatus, WebhookDispatcher, list_deliveries, new_secret, outbox

pytestmark = pytest.mark.timeout(90)

NODE_SCRIPT = Path(__file__).with_name("outbox_node.py")


@pytest.fixture
async def schema() -> str:
    return "t_" + secrets.token_hex(6)


@pytest.fixture
async def nodes(pg_database: str, schema: str) -> AsyncIterator[Callable[[], Any]]:
    """``await nodes()`` opens one more node's store on this test's schema."""
    opened: list[PostgresStore] = []

    async def open_node() -> PostgresStore:
        opened.append(await PostgresStore.open(pg_database, schema=schema))
        return opened[-1]

    yield open_node
    for store in opened:
        await store.close()


async def test_two_nodes_deliver_every_row_exactly_once(
    nodes: Callable[[], Any], tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(delay=lambda request: 0.02)
    await receiver.start()
    secret = new_secret()
    sessions = {f"ses_{i}": hooked_session(f"ses_{i}", receiver.url(), secret) for i in range(6)}
    # Small caps, so each node's pick claims more rows than it can start and gives the rest back.
    options = dataclasses.replace(FAST, max_in_flight=4, per_session=2)
    stores = [await nodes(), await nodes()]
    dispatchers = [
        WebhookDispatcher(store, settings_for(tmp_path, node_id=f"node-{n}"), sessions=sessions,
                          clock=RealClock(), options=options)
        for n, store in enumerate(stores)
    ]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        written = []
        for batch in range(20):  # both nodes write events, as two nodes serving sessions would
            store = stores[batch % 2]
            written += await store.append([new_event(f"ses_{(batch + i) % 6}", batch * 10 + i) for i in range(6)])
        await eventually(lambda: len(receiver.by_event()) == len(written), what="every event")
        for dispatcher in dispatchers:
            await eventually(lambda d=dispatcher: drained(d), what="the outbox to drain")
    finally:
        for dispatcher in dispatchers:
            await dispatcher.aclose()

    by_event = receiver.by_event()
    assert sorted(by_event) == sorted(e.id for e in written)
    assert all(len(requests) == 1 for requests in by_event.values()), "a row went out twice"
    for requests in by_event.values():
        Webhook(secret).verify(requests[0].body, requests[0].headers)
    assert sum(d.delivered for d in dispatchers) == len(written)
    assert all(d.delivered > 0 for d in dispatchers), [d.delivered for d in dispatchers]
    rows = await stores[0].fetchall("SELECT status, claimed_by, claimed_until FROM webhook_deliveries")
    assert {tuple(r) for r in rows} == {("delivered", None, None)}


async def test_a_node_that_dies_mid_send_leaves_its_rows_to_another_after_the_claim_expires(
    nodes: Callable[[], Any], pg_database: str, schema: str, tmp_path: Path,
    receivers: Callable[..., Receiver],
) -> None:
    hang = {"on": True}
    receiver = receivers(delay=lambda request: 6.0 if hang["on"] else 0.0)
    await receiver.start()
    secret = new_secret()
    store = await nodes()
    events = await store.append([new_event("ses_a", i) for i in range(4)])  # per_session: all at once
    await store.write(statements=[
        outbox.enqueue(store, e.id, "ses_a", receiver.url(), secret, e.timestamp) for e in events
    ])

    # Node A: its own process; requests time out after 4 s, so its claims last 4 + 1 s.
    node_a = await asyncio.create_subprocess_exec(
        sys.executable, str(NODE_SCRIPT), pg_database, schema, "node-a", str(tmp_path / "a"), "4", "1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert node_a.stdout is not None
        assert (await asyncio.wait_for(node_a.stdout.readline(), 30)).strip() == b"ready"
        await eventually(lambda: len(receiver.requests) == 4, what="node A sending every row")
        claims = await store.fetchall("SELECT claimed_by, claimed_until FROM webhook_deliveries")
        node_a.kill()  # kill -9, mid-send: no outcome recorded, no claim given back
        await node_a.wait()
    finally:
        if node_a.returncode is None:
            node_a.kill()
            await node_a.wait()
    assert {c[0] for c in claims} == {"node-a"}
    expires: datetime = max(c[1] for c in claims)
    sent_by_a = {r.json()["id"]: r.webhook_id for r in receiver.requests}

    hang["on"] = False
    node_b = WebhookDispatcher(store, settings_for(tmp_path, node_id="node-b"), sessions={},
                               clock=RealClock(), options=FAST)
    node_b.start()
    try:
        await eventually(lambda: len(receiver.requests) == 8, timeout=30, what="node B resending every row")
        await eventually(lambda: drained(node_b), what="the outbox to drain")
    finally:
        await node_b.aclose()

    resent = receiver.requests[4:]
    assert {r.json()["id"]: r.webhook_id for r in resent} == sent_by_a  # the same webhook-id
    assert all(r.received_at >= expires for r in resent), "node B sent a row node A still held"
    for r in resent:
        Webhook(secret).verify(r.body, r.headers)
    page = await list_deliveries(store, "ses_a")
    assert {d.status for d in page.deliveries} == {DeliveryStatus.DELIVERED}
    assert all(d.attempts == 1 for d in page.deliveries)  # node A never recorded its attempts
    rows = await store.fetchall("SELECT claimed_by, claimed_until FROM webhook_deliveries")
    assert {tuple(r) for r in rows} == {(None, None)}


async def test_a_node_that_closes_gives_its_claims_back(
    nodes: Callable[[], Any], tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """A clean shutdown cancels requests still running after the grace and gives their rows
    back at once: another node sends them without waiting for the claims to expire."""
    hang = {"on": True}
    receiver = receivers(delay=lambda request: 5.0 if hang["on"] else 0.0)
    await receiver.start()
    secret = new_secret()
    store_a, store_b = await nodes(), await nodes()
    events = await store_a.append([new_event("ses_a", i) for i in range(3)])
    await store_a.write(statements=[
        outbox.enqueue(store_a, e.id, "ses_a", receiver.url(), secret, e.timestamp) for e in events
    ])
    slow = dataclasses.replace(FAST, timeout=30.0, shutdown_grace=0.1)  # claims would last 35 s
    node_a = WebhookDispatcher(store_a, settings_for(tmp_path, node_id="node-a"), sessions={},
                               clock=RealClock(), options=slow)
    node_a.start()
    await eventually(lambda: len(receiver.requests) == 3, what="node A sending every row")
    await node_a.aclose()
    hang["on"] = False

    node_b = WebhookDispatcher(store_b, settings_for(tmp_path, node_id="node-b"), sessions={},
                               clock=RealClock(), options=FAST)
    node_b.start()
    try:
        await eventually(lambda: len(receiver.requests) == 6, timeout=10, what="node B sending them again")
        await eventually(lambda: drained(node_b), what="the outbox to drain")
    finally:
        await node_b.aclose()
    assert {r.webhook_id for r in receiver.requests[3:]} == {r.webhook_id for r in receiver.requests[:3]}


async def test_claims_belong_to_an_instance_not_to_its_node_id(
    nodes: Callable[[], Any], tmp_path: Path,
) -> None:
    """Two processes with one node id (a restart after kill -9, or a twin refused at join)
    are two claimants: one's closing never gives back rows the other is sending, and its pick
    never takes them while their claim is live."""
    store = await nodes()
    events = await store.append([new_event("ses_a", i) for i in range(3)])
    await store.write(statements=[
        outbox.enqueue(store, e.id, "ses_a", "https://hooks.example/x", new_secret(), e.timestamp) for e in events
    ])
    old, new = outbox.Claim("node-a/old", lease=60), outbox.Claim("node-a/new", lease=60)
    now = datetime.now(UTC)
    picked = await outbox.pick(store, now, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                               limit=10, claim=old)
    assert sorted(d.id for d in picked) == sorted(e.id for e in events)
    assert await outbox.pick(store, now, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                             limit=10, claim=new) == []
    await outbox.release_all(store, new)  # the other instance closes: nothing of old's is freed
    assert await outbox.pick(store, now, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                             limit=10, claim=new) == []
    claimed = await store.fetchall("SELECT DISTINCT claimed_by FROM webhook_deliveries WHERE claimed_by IS NOT NULL")
    assert [r[0] for r in claimed] == ["node-a/old"]
    await outbox.release_all(store, old)
    assert await outbox.pick(store, now, skip_ids=[], skip_sessions=[], skip_urls=[], skip_owners=[],
                             limit=10, claim=new)

