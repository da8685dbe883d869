"""The nodes table on a real PostgreSQL: register, heartbeat, list the live ones, leave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from watui.cluster.nodes import Nodes
from watui.stores.postgres import PostgresStore

OpenNodes = Callable[..., Awaitable[list[PostgresStore]]]


async def test_nodes_register_heartbeat_list_and_leave(open_nodes: OpenNodes) -> None:
    a, b = await open_nodes(2)
    na, nb = Nodes(a.pool, "A", "http://a:1", 100), Nodes(b.pool, "B", "http://b:2", 50)
    await na.register()
    await asyncio.sleep(0.01)
    await nb.register()

    listed = await na.list(within=5)
    assert [(n.node_id, n.url, n.capacity, n.sessions) for n in listed] == [
        ("A", "http://a:1", 100, 0), ("B", "http://b:2", 50, 0)]
    assert listed[0].started_at < listed[1].started_at, "oldest first"

    await nb.heartbeat(7)
    (_, b_after) = await na.list(within=5)
    assert b_after.sessions == 7 and b_after.heartbeat_at > listed[1].heartbeat_at
    assert b_after.started_at == listed[1].started_at, "a heartbeat keeps started_at"
    assert await na.url_of("B") == "http://b:2" and await na.url_of("nobody") is None

    await asyncio.sleep(0.4)  # A stops heartbeating (it died); B goes on
    await nb.heartbeat(8)
    assert [n.node_id for n in await nb.list(within=0.3)] == ["B"]
    assert [n.node_id for n in await nb.list(within=5)] == ["A", "B"], "a dead node keeps its row"

    await nb.leave()
    assert [n.node_id for n in await na.list(within=5)] == ["A"]
    await nb.heartbeat(1)  # a heartbeat after a leave brings the row back
    assert await na.url_of("B") == "http://b:2"


async def test_registering_again_restarts_the_node(open_nodes: OpenNodes) -> None:
    (store,) = await open_nodes(1)
    node = Nodes(store.pool, "A", "http://a:1", 100)
    await node.register()
    await node.heartbeat(3)
    (before,) = await node.list(within=5)
    await asyncio.sleep(0.01)
    moved = Nodes(store.pool, "A", "http://a:9", 10, instance=node.instance)  # the same process
    await moved.register()
    (after,) = await node.list(within=5)
    assert after.started_at > before.started_at
    assert (after.url, after.capacity, after.sessions) == ("http://a:9", 10, 0)


async def test_a_second_instance_of_a_live_node_id_is_refused_naming_it(open_nodes: OpenNodes) -> None:
    from watui.cluster.nodes import NodeIdInUse

    (store,) = await open_nodes(1)
    live = Nodes(store.pool, "A", "http://a:1", 100)
    await live.join()

    async def beat() -> None:
        while True:
            await live.heartbeat(2)
            await asyncio.sleep(0.2)

    beating = asyncio.create_task(beat())
    try:
        second = Nodes(store.pool, "A", "http://a:2", 100)
        with pytest.raises(NodeIdInUse) as refused:
            await second.join()
    finally:
        beating.cancel()
    message = str(refused.value)
    assert "'A'" in message and live.instance in message and "http://a:1" in message
    assert f"pid {live.pid}" in message and live.host in message
    # Nothing of the live instance's row was touched, and its heartbeat still counts.
    assert await live.heartbeat(3)
    assert await store.pool.fetchval("SELECT instance FROM nodes WHERE node_id = 'A'") == live.instance


async def test_a_restart_takes_the_node_id_over_once_the_old_heartbeat_is_stale(
    open_nodes: OpenNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watui.cluster import nodes

    monkeypatch.setattr(nodes, "STALE_AFTER", 0.6)
    (store,) = await open_nodes(1)
    dead = Nodes(store.pool, "A", "http://a:1", 100)
    await dead.join()  # and then it never heartbeats again (kill -9)
    restarted = Nodes(store.pool, "A", "http://a:1", 100)
    started = time.monotonic()
    await restarted.join()
    assert time.monotonic() - started < 1.5
    assert await store.pool.fetchval("SELECT instance FROM nodes WHERE node_id = 'A'") == restarted.instance
    assert not await dead.heartbeat(0), "the old instance learns it was superseded"
    await dead.leave()  # and cannot delete the new instance's row
    assert await restarted.url_of("A") == "http://a:1"
