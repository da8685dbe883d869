"""Cluster mode: the simulated engine keeps its link state in PostgreSQL (``engine_auth``).

Two engine instances on one database play two nodes: a session linked on "node A" resumes
connected on "node B" with the same JID and no QR code, because its auth lives in the shared
database, not in A's memory or data dir. Real PostgreSQL (a fresh database for the test run).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from engine_recorder import Recorder as EngineEvents

from watui.config import Settings
from watui.engines.base import (
    LoggedOut,
    PairSuccess,
    PhoneAction,
    QrCodeIssued,
    SessionConnected,
)
from watui.engines.factory import build_engine
from watui.engines.hosts import HostedEngine
from watui.engines.simulated import SimulatedEngine
from watui.engines.spec import EngineSpec, spec_for

FAST = {"connect_latency": 0.01, "link_latency": 0.01}

Node = Callable[[], Awaitable[SimulatedEngine]]


class Recorder(EngineEvents):
    """The simulated engine answers within a second: wait 5 s for an event, not 20."""

    def __init__(self) -> None:
        super().__init__(timeout=5.0)


def command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode()


def new_id() -> str:
    return "ses_" + secrets.token_hex(6)


async def stored_row(dsn: str, session_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT engine, data FROM engine_auth WHERE session_id = $1", session_id
        )
        return row
    finally:
        await conn.close()


@pytest.fixture
async def node(pg_database: str) -> AsyncIterator[Node]:
    """``await node()``: one more simulated engine on the cluster's database (another node)."""
    engines: list[SimulatedEngine] = []

    async def make() -> SimulatedEngine:
        engine = SimulatedEngine(seed=len(engines), database_url=pg_database, **FAST)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


async def link(engine: SimulatedEngine, session_id: str, auth_path: Path) -> tuple[Recorder, str]:
    """Connect a new session, scan its QR code, wait until connected; returns its JID."""
    report = Recorder()
    session = engine.session(session_id, report, auth_path=auth_path)
    await session.connect()
    assert isinstance(await report.next(), QrCodeIssued)
    await engine.play_phone(session_id, PhoneAction("scan"))
    paired = await report.next()
    assert isinstance(paired, PairSuccess)
    connected = await report.next()
    assert isinstance(connected, SessionConnected) and connected.jid == paired.jid
    return report, connected.jid


async def test_a_session_linked_on_one_node_resumes_on_another_without_a_qr(
    node: Node, pg_database: str, tmp_path: Path
) -> None:
    sid, auth_path = new_id(), tmp_path / "auth" / "a.db"
    node_a, node_b = await node(), await node()
    assert not await node_b.has_auth(sid, auth_path)

    _, jid = await link(node_a, sid, auth_path)
    row = await stored_row(pg_database, sid)
    assert row is not None and row["engine"] == "simulated" and jid in row["data"]
    assert not auth_path.exists()  # cluster mode writes no auth file
    await node_a.sessions[sid].close()  # node A goes away (its memory with it)

    assert await node_b.has_auth(sid, tmp_path / "elsewhere.db")
    report = Recorder()
    await node_b.session(sid, report, auth_path=tmp_path / "elsewhere.db").connect()
    resumed = await report.next()
    assert isinstance(resumed, SessionConnected)
    assert resumed.jid == jid and resumed.phone_number == jid.split(":")[0]
    await asyncio.sleep(0.05)
    assert not any(isinstance(e, QrCodeIssued) for e in report.events)


async def test_the_link_is_committed_before_it_is_reported(
    node: Node, pg_database: str, tmp_path: Path
) -> None:
    """While another transaction blocks the write, the engine reports nothing of the link."""
    sid = new_id()
    engine = await node()
    await engine.has_auth(sid, tmp_path / "x.db")  # the table exists before we lock it
    report = Recorder()
    await engine.session(sid, report, auth_path=tmp_path / "x.db").connect()
    assert isinstance(await report.next(), QrCodeIssued)

    blocker = await asyncpg.connect(pg_database)
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE engine_auth IN EXCLUSIVE MODE")
        scan = asyncio.create_task(engine.play_phone(sid, PhoneAction("scan")))
        await asyncio.sleep(0.3)
        assert not scan.done() and report.events[1:] == []  # waiting on the database
        await lock.rollback()
        await asyncio.wait_for(scan, 5)
    finally:
        await blocker.close()
    paired = await report.next()
    assert isinstance(paired, PairSuccess)
    row = await stored_row(pg_database, sid)
    assert row is not None and paired.jid in row["data"]


async def test_logout_on_one_node_clears_the_link_for_every_node(
    node: Node, pg_database: str, tmp_path: Path
) -> None:
    sid, auth_path = new_id(), tmp_path / "l.db"
    node_a, node_b = await node(), await node()
    await link(node_a, sid, auth_path)
    assert await node_b.has_auth(sid, auth_path)
    await node_a.sessions[sid].close()

    report = Recorder()
    session_b = node_b.session(sid, report, auth_path=auth_path)
    await session_b.connect()
    assert isinstance(await report.next(), SessionConnected)
    await session_b.logout()
    assert await stored_row(pg_database, sid) is None
    assert not await node_a.has_auth(sid, auth_path)

    # Node A linked it once and still has it cached: its next connect must pair anew.
    again = Recorder()
    await node_a.session(sid, again, auth_path=auth_path).connect()
    assert isinstance(await again.next(), QrCodeIssued)
    await node_b.remove_auth(sid, auth_path)  # idempotent


async def test_the_phone_removing_the_device_deletes_the_row_before_reporting(
    node: Node, pg_database: str, tmp_path: Path
) -> None:
    sid = new_id()
    engine = await node()
    report, _ = await link(engine, sid, tmp_path / "p.db")
    await engine.play_phone(sid, PhoneAction("logout"))
    assert isinstance(await report.next(), LoggedOut)
    assert await stored_row(pg_database, sid) is None
    assert not await (await node()).has_auth(sid, tmp_path / "p.db")


async def test_the_settings_give_engines_the_database_url(pg_database: str, tmp_path: Path) -> None:
    clustered = Settings(data_dir=tmp_path, engine="simulated", database_url=pg_database)
    assert spec_for(clustered).options["database_url"] == pg_database
    engine = build_engine(clustered, clock=None)  # type: ignore[arg-type]
    assert isinstance(engine, SimulatedEngine) and engine.auth_db is not None
    await engine.aclose()
    alone = Settings(data_dir=tmp_path, engine="simulated")
    assert "database_url" not in spec_for(alone).options
    assert "database_url" not in spec_for(Settings(data_dir=tmp_path, engine="neonize")).options
    assert spec_for(Settings(data_dir=tmp_path, engine="neonize", database_url=pg_database)).options == {
        "database_url": pg_database
    }


async def test_a_session_linked_in_an_engine_host_resumes_on_another_node(
    node: Node, pg_database: str, tmp_path: Path
) -> None:
    """The host process gets the database URL (in its environment, not on its command line)."""
    sid, auth_path = new_id(), tmp_path / "h.db"
    hosted = HostedEngine(EngineSpec("simulated", {**FAST, "database_url": pg_database}))
    try:
        report = Recorder()
        session = hosted.session(sid, report, auth_path=auth_path)
        await session.connect()
        assert isinstance(await report.next(), QrCodeIssued)
        (host,) = hosted.supervisor.live
        assert host.pid is not None
        assert pg_database not in command_line(host.pid)
        await hosted.play_phone(sid, PhoneAction("scan"))  # returns once the row committed
        assert await stored_row(pg_database, sid) is not None
        assert isinstance(await report.next(), PairSuccess)
        connected = await report.next()
        assert isinstance(connected, SessionConnected)
        assert await hosted.has_auth(sid, auth_path)
        await session.close()
    finally:
        await hosted.aclose()

    other = await node()
    resumed = Recorder()
    await other.session(sid, resumed, auth_path=auth_path).connect()
    event = await resumed.next()
    assert isinstance(event, SessionConnected) and event.jid == connected.jid
    await other.remove_auth(sid, auth_path)
    assert await stored_row(pg_database, sid) is None


async def test_a_connect_without_the_database_fails_and_a_later_one_works(
    pg_database: str, tmp_path: Path
) -> None:
    sid = new_id()
    down = SimulatedEngine(database_url="postgresql://postgres@127.0.0.1:1/none", **FAST)
    session = down.session(sid, Recorder(), auth_path=tmp_path / "d.db")
    with pytest.raises(OSError):
        await session.connect()
    assert session.state == "closed"
    down.auth_db = SimulatedEngine(database_url=pg_database).auth_db  # the database is back
    report = Recorder()
    session.report = report
    await session.connect()
    assert isinstance(await report.next(), QrCodeIssued)
    await down.aclose()
