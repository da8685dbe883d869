"""What belongs to one cluster (issue 20, section 5), with real ``watui serve`` nodes: its
Redis keys (two clusters on one Redis never see each other's commits), its session names
(unique per owner in the database, so two nodes cannot both create one name), and its secret
(made by the first node, shared through the database, or given as ``WATUI_CLUSTER_SECRET``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from watui.cluster.identity import load_identity
from watui.stores.postgres import PostgresStore

from .cluster_helpers import (
    Cluster,
    RedisServer,
    create_key,
    fresh_database,
    running_cluster,
    wait_until,
)
from .test_multinode import create, link

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_the_first_node_makes_the_identity_and_the_others_read_it(pg_database: str) -> None:
    one = await PostgresStore.open(pg_database, schema="ident_a")
    other = await PostgresStore.open(pg_database, schema="ident_b")
    try:
        first, again = await load_identity(one.pool), await load_identity(one.pool)
        assert first == again and len(first.secret) >= 32
        elsewhere = await load_identity(other.pool)
        assert elsewhere.id != first.id and elsewhere.secret != first.secret
        assert first.stream == f"watui:{first.id}:commits" != elsewhere.stream
        given = await load_identity(one.pool, "an-operators-own-secret")
        assert (given.id, given.secret) == (first.id, "an-operators-own-secret")
    finally:
        await one.close()
        await other.close()


def test_two_clusters_on_one_redis_keep_to_themselves(tmp_path: Path) -> None:
    redis_server = RedisServer().start()
    clusters: list[Cluster] = []
    drops = []
    try:
        for name in ("a", "b"):
            dsn, drop = fresh_database()
            drops.append(drop)
            c = Cluster(dsn, redis_server, tmp_path / name)
            c.admin_key = create_key(dsn, "admin", admin=True)
            c.add("n1")  # the same node id in both: they are different clusters
            clusters.append(c)
        a, b = clusters
        ids = [create(a, "n1", f"only-in-a-{i}") for i in range(3)]
        for session_id in ids:
            link(a, "n1", session_id)
        marker = create(b, "n1", "only-in-b")  # a commit of b's after a's, on the same Redis

        def b_sees_its_own() -> bool:
            with b.client("n1") as client:
                return marker in {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}

        wait_until(b_sees_its_own, "b to list its own session")
        with b.client("n1") as client:
            listed = {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}
            assert listed == {marker}, listed
        streams = sorted(k.decode() for k in redis.Redis(port=redis_server.port).keys("watui:*"))
        assert len(streams) == 2 and all(s.endswith(":commits") for s in streams), streams
    finally:
        for c in clusters:
            c.stop()
        redis_server.stop()
        for drop in drops:
            drop()


def test_one_name_created_on_three_nodes_at_once_is_created_once(tmp_path: Path) -> None:
    with running_cluster(tmp_path, ("n1", "n2", "n3")) as c:

        def attempt(i: int) -> int:
            # The same name in three Unicode/case forms: one name as watui compares them.
            name = ("Café", "cafe\u0301", "ＣＡＦÉ")[i % 3]
            with c.client(f"n{i % 3 + 1}") as client:
                return client.post("/v1/sessions", json={"name": name}).status_code

        for round_ in range(3):
            with ThreadPoolExecutor(9) as pool:
                codes = list(pool.map(attempt, range(9)))
            assert sorted(codes) == [201] + [409] * 8, (round_, codes)
            with c.client("n1") as client:
                listed = client.get("/v1/sessions").json()["sessions"]
                assert len(listed) == 1, listed
                assert client.delete(f"/v1/sessions/{listed[0]['id']}").status_code in (200, 204)
            wait_until(lambda: all(not _listed(c, n) for n in ("n1", "n2", "n3")), "the delete to be seen")


def _listed(c: Cluster, node: str) -> list[dict[str, object]]:
    with c.client(node) as client:
        sessions: list[dict[str, object]] = client.get("/v1/sessions").json()["sessions"]
        return sessions




async def test_names_that_already_collide_keep_working_and_only_the_oldest_holds_the_name(
    pg_database: str,
) -> None:
    """A database from before names were unique in it may hold one name twice: the migration
    gives the key to the oldest; the others keep being written (no key) until renamed."""
    from datetime import UTC, datetime

    from watui.errors import Conflict
    from watui.models import Session
    from watui.stores.postgres_schema import MIGRATIONS

    store = await PostgresStore.open(pg_database, schema="legacy_names")
    try:
        now = datetime.now(UTC)
        old, twin, other = (Session(id=i, name=n, owner="alice", created_at=now, updated_at=now)
                            for i, n in (("s1", "Shop"), ("s2", "shop"), ("s3", "Other")))
        await store.write(sessions=[old])
        # Before the migration nothing stopped a second "shop": as an old database has it.
        await store.pool.execute("DROP INDEX sessions_owner_name")
        await store.write(sessions=[twin, other])
        await store.pool.execute("UPDATE sessions SET name_key = NULL")
        migration = next(m for m in MIGRATIONS if "sessions_owner_name" in m)
        for statement in migration.split(";"):
            if "name_key =" in statement or "UNIQUE INDEX" in statement:
                await store.pool.execute(statement)
        keys = {r[0]: r[1] for r in await store.fetchall("SELECT id, name_key FROM sessions")}
        assert keys == {"s1": "shop", "s2": None, "s3": "other"}
        await store.write(sessions=[twin.model_copy(update={"description": "still written"})])
        with pytest.raises(Conflict):  # renamed onto a name the oldest holds: refused
            await store.write(sessions=[other.model_copy(update={"name": "SHOP"})])
        await store.write(sessions=[twin.model_copy(update={"name": "Shop 2"})])
        keys = {r[0]: r[1] for r in await store.fetchall("SELECT id, name_key FROM sessions")}
        assert keys == {"s1": "shop", "s2": "shop 2", "s3": "other"}
    finally:
        await store.close()
