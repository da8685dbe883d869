"""Cluster mode with the real neonize engine: whatsmeow's store in PostgreSQL, a device per
session picked by its JID.

WhatsApp is not reachable here, so every dial goes to a proxy port nobody listens on and is
refused at once. What is real: neonize (its Go core) opening the cluster's PostgreSQL database,
creating whatsmeow's tables in it, and resuming the device whose JID watui gives it (a JID it
cannot find would crash the Go side), the auth checks and deletes against those tables, and the
clean failure and release of a session without network, inline and in an engine host.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from engine_recorder import Recorder
from neonize.events import EVENT_TO_INT
from neonize.proto import Neonize_pb2 as pb

from watui.engines.base import PairSuccess, SessionError
from watui.engines.hosts import HostedEngine
from watui.engines.neonize import NeonizeEngine
from watui.engines.neonize.devices import whatsmeow_dsn
from watui.engines.neonize.mapping import _jid_proto, jid_str
from watui.engines.neonize.run import _Run
from watui.engines.spec import EngineSpec


def refused_proxy() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"socks5://127.0.0.1:{port}"


def new_id() -> str:
    return "ses_" + secrets.token_hex(6)


@pytest.fixture
async def db(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_database)
    yield conn
    await conn.close()


@pytest.fixture
async def engine(pg_database: str) -> AsyncIterator[NeonizeEngine]:
    engine = NeonizeEngine(proxy=refused_proxy(), database_url=pg_database)
    yield engine
    await engine.aclose()


async def whatsmeow_tables(db: asyncpg.Connection) -> set[str]:
    rows = await db.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow_%'")
    return {r["tablename"] for r in rows}


async def fail_to_dial(engine: NeonizeEngine, session_id: str, auth_path: Path) -> str | None:
    """Connect (the dial is refused), check the clean failure, close; the run's JID."""
    report = Recorder()
    session = engine.session(session_id, report, auth_path=auth_path)
    await session.connect()
    run = session._run
    assert run is not None
    event = await report.next()
    assert isinstance(event, SessionError) and event.code == "connect_failed"
    assert "connection refused" in event.message
    await session.close()
    assert not [t for t in threading.enumerate() if t.name == f"watui-neonize-{session_id}"]
    return run.jid


async def seed_device(db: asyncpg.Connection, user: str, device: int = 7) -> str:
    """A linked device row in whatsmeow's PostgreSQL schema (as a pairing would leave it)."""
    jid = f"{user}:{device}@s.whatsapp.net"
    rnd = os.urandom
    await db.execute(
        "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
        " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
        " adv_account_sig, adv_account_sig_key, adv_device_sig, push_name)"
        " VALUES ($1, 1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, 'Ada')",
        jid, rnd(32), rnd(32), rnd(32), rnd(64), rnd(32), rnd(16), rnd(64), rnd(32), rnd(64),
    )
    return jid


async def test_a_new_session_opens_the_cluster_database_and_fails_cleanly_offline(
    engine: NeonizeEngine, db: asyncpg.Connection, tmp_path: Path
) -> None:
    sid, auth_path = new_id(), tmp_path / "auth" / "n.db"
    assert not await engine.has_auth(sid, auth_path)
    assert await fail_to_dial(engine, sid, auth_path) is None  # no JID: a new device
    # neonize opened PostgreSQL (not a file) and whatsmeow created its schema there.
    assert {"whatsmeow_device", "whatsmeow_identity_keys", "whatsmeow_sessions"} <= await whatsmeow_tables(db)
    assert not auth_path.exists() and not auth_path.parent.exists()
    assert not await engine.has_auth(sid, auth_path)  # a failed dial links nothing


async def test_a_linked_session_resumes_its_own_device_by_jid(
    engine: NeonizeEngine, db: asyncpg.Connection, pg_database: str, tmp_path: Path
) -> None:
    await fail_to_dial(engine, new_id(), tmp_path / "first.db")  # whatsmeow's schema exists
    mine, other = new_id(), new_id()
    jid = await seed_device(db, "4915100000001")
    other_jid = await seed_device(db, "4915100000002")
    await db.execute(
        "INSERT INTO engine_auth(session_id, engine, data) VALUES ($1, 'neonize', $2), ($3, 'neonize', $4)",
        mine, json.dumps({"jid": jid}), other, json.dumps({"jid": other_jid}),
    )
    node_b = NeonizeEngine(proxy=refused_proxy(), database_url=pg_database)  # another node
    try:
        assert await node_b.has_auth(mine, tmp_path / "unused.db")
        # Given to Go, the JID picks the device (an unknown one would crash the Go side).
        assert await fail_to_dial(node_b, mine, tmp_path / "unused.db") == jid
    finally:
        await node_b.aclose()
    remaining = {r["jid"] for r in await db.fetch("SELECT jid FROM whatsmeow_device")}
    assert {jid, other_jid} <= remaining  # resuming added no device and touched no other

    await engine.remove_auth(mine, tmp_path / "unused.db")
    assert not await engine.has_auth(mine, tmp_path / "unused.db")
    assert await db.fetchval("SELECT count(*) FROM whatsmeow_device WHERE jid = $1", jid) == 0
    assert await db.fetchval("SELECT count(*) FROM engine_auth WHERE session_id = $1", mine) == 0
    assert await engine.has_auth(other, tmp_path / "unused.db")
    await engine.remove_auth(mine, tmp_path / "unused.db")  # idempotent


async def test_remove_auth_takes_the_devices_keys_and_contacts_with_it(
    engine: NeonizeEngine, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await fail_to_dial(engine, new_id(), tmp_path / "first.db")
    sid = new_id()
    jid = await seed_device(db, "4915100000003")
    await db.execute(
        "INSERT INTO whatsmeow_identity_keys(our_jid, their_id, identity) VALUES ($1, 'x', $2)",
        jid, os.urandom(32),
    )
    await db.execute(
        "INSERT INTO engine_auth(session_id, engine, data) VALUES ($1, 'neonize', $2)",
        sid, json.dumps({"jid": jid}),
    )
    await engine.remove_auth(sid, tmp_path / "unused.db")
    assert await db.fetchval("SELECT count(*) FROM whatsmeow_identity_keys WHERE our_jid = $1", jid) == 0


async def test_a_jid_whose_device_is_gone_links_a_new_device(
    engine: NeonizeEngine, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """WhatsApp logged the device out (whatsmeow deleted it): no resume, no crash, a new link."""
    await fail_to_dial(engine, new_id(), tmp_path / "first.db")
    sid = new_id()
    await db.execute(
        "INSERT INTO engine_auth(session_id, engine, data) VALUES ($1, 'neonize', $2)",
        sid, json.dumps({"jid": "4915100000009:3@s.whatsapp.net"}),
    )
    assert not await engine.has_auth(sid, tmp_path / "unused.db")
    assert await fail_to_dial(engine, sid, tmp_path / "unused.db") is None


async def test_pair_success_records_the_device_before_it_is_reported(
    engine: NeonizeEngine, db: asyncpg.Connection, pg_database: str, tmp_path: Path
) -> None:
    """Drive the run's callback as Go does (raw bytes, from another thread): the JID row is
    committed before PairSuccess reaches ``report``, so another node can resume the device."""
    await fail_to_dial(engine, new_id(), tmp_path / "first.db")  # whatsmeow's schema exists
    sid = new_id()
    report = Recorder()
    session = engine.session(sid, report, auth_path=tmp_path / "unused.db")
    run = _Run(session, asyncio.get_running_loop(), new_device=True, options=engine.options)
    jid = "4915100000004:5@s.whatsapp.net"
    event = pb.PairStatus(ID=_jid_proto(jid), BusinessName="", Platform="android", Status=pb.PairStatus.SUCCESS)
    data = event.SerializeToString()
    buf = ctypes.create_string_buffer(data, len(data))

    await db.execute("BEGIN")
    await db.execute("LOCK TABLE engine_auth IN EXCLUSIVE MODE")
    go_side = threading.Thread(
        target=run._on_event, args=(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[pb.PairStatus])
    )
    go_side.start()
    await asyncio.sleep(0.3)
    assert report.events == []  # the Go thread waits for the commit
    await db.execute("ROLLBACK")
    paired = await report.next(timeout=5)
    await asyncio.to_thread(go_side.join)
    assert paired == PairSuccess(jid=jid, phone_number="4915100000004", platform="android")
    stored = await db.fetchval("SELECT data FROM engine_auth WHERE session_id = $1", sid)
    assert json.loads(stored) == {"jid": jid}

    await seed_device(db, "4915100000004", device=5)  # what whatsmeow committed before the event
    node_b = NeonizeEngine(proxy=refused_proxy(), database_url=pg_database)
    try:
        assert await fail_to_dial(node_b, sid, tmp_path / "unused.db") == jid  # resumes it
    finally:
        await node_b.aclose()


async def test_has_auth_on_a_database_neonize_never_opened(tmp_path: Path) -> None:
    from pg_server import SERVER, admin_sql

    name = "watui_test_empty_" + secrets.token_hex(4)
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        dsn = SERVER.rsplit("/", 1)[0] + "/" + name
        engine = NeonizeEngine(database_url=dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE engine_auth (session_id text PRIMARY KEY, engine text NOT NULL,"
                               " data text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
            await conn.execute("INSERT INTO engine_auth VALUES ('s', 'neonize', '{\"jid\": \"1:1@s.whatsapp.net\"}')")
        finally:
            await conn.close()
        assert not await engine.has_auth("s", tmp_path / "unused.db")  # no whatsmeow tables yet
        await engine.remove_auth("s", tmp_path / "unused.db")
        assert not await engine.has_auth("s", tmp_path / "unused.db")
        await engine.aclose()
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_hosted_neonize_session_uses_the_cluster_database(
    pg_database: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    engine = HostedEngine(EngineSpec("neonize", {"proxy": refused_proxy(), "database_url": pg_database}))
    sid = new_id()
    try:
        report = Recorder()
        session = engine.session(sid, report, auth_path=tmp_path / "auth" / "h.db")
        await session.connect()
        event = await report.next()
        assert isinstance(event, SessionError) and "connection refused" in event.message
        assert "whatsmeow_device" in await whatsmeow_tables(db)
        assert not (tmp_path / "auth").exists()
        assert not await engine.has_auth(sid, tmp_path / "auth" / "h.db")
        await session.close()
    finally:
        await engine.aclose()


def test_whatsmeow_gets_a_url_lib_pq_can_use() -> None:
    assert whatsmeow_dsn("postgresql://u@h/db") == "postgresql://u@h/db?sslmode=prefer"
    assert whatsmeow_dsn("postgres://u@h/db?application_name=x") == (
        "postgres://u@h/db?application_name=x&sslmode=prefer"
    )
    assert whatsmeow_dsn("postgresql://u@h/db?sslmode=require") == "postgresql://u@h/db?sslmode=require"


@pytest.mark.parametrize(
    "jid", ["4915112345678:7@s.whatsapp.net", "4915112345678@s.whatsapp.net", "123456.1:2@lid"]
)
def test_jids_round_trip_to_neonizes_message(jid: str) -> None:
    assert jid_str(_jid_proto(jid)) == jid
