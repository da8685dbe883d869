"""The manager: every lifecycle path on the simulated engine, with a fake clock."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    QrNotAvailable,
    SessionLimitReached,
    SessionNotConnected,
    SessionNotFound,
    ValidationFailed,
)
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.manager.restore import JITTER
from watui.models import Caller, SessionCreate, SessionUpdate, SimulateRequest


async def events_of(manager: SessionManager, session_id: str) -> list[tuple[str, dict]]:
    rows = await manager.store.read_events(session_id=session_id, limit=10_000)
    return [(e.type.value, e.payload) for e in rows]


async def statuses(manager: SessionManager, session_id: str) -> list[str]:
    return [p["to"] for t, p in await events_of(manager, session_id) if t == "status"]


async def new_qr_session(admin: ScopedService, clock: FakeClock, name: str = "alpha") -> str:
    session = await admin.create_session(SessionCreate(name=name))
    await clock.advance(0)
    return session.id


async def link(admin: ScopedService, clock: FakeClock, name: str = "alpha") -> str:
    session_id = await new_qr_session(admin, clock, name)
    await admin.simulate(session_id, SimulateRequest(action="scan"))
    await clock.advance(0)
    return session_id


async def test_qr_link_flow(manager: SessionManager, admin: ScopedService, clock: FakeClock) -> None:
    session_id = await new_qr_session(admin, clock)
    session = await admin.get_session(session_id)
    assert session.status is Status.QR_READY and session.qr_generation == 1
    qr = await admin.get_qr(session_id)
    assert qr.qr_text.startswith("https://wa.me/settings/linked_devices#2@")
    assert qr.qr_data.startswith("data:image/png;base64,")
    assert (qr.expires_at - clock.now()).total_seconds() == 60
    await admin.simulate(session_id, SimulateRequest(action="scan"))
    await clock.advance(0)
    session = await admin.get_session(session_id)
    assert session.status is Status.CONNECTED and session.linked
    assert session.phone_number and session.push_name and session.qr_expires_at is None
    assert await statuses(manager, session_id) == ["stopped", "initializing", "qr_ready", "connecting", "connected"]
    kinds = [t for t, _ in await events_of(manager, session_id)]
    assert kinds.count("connected") == 1 and kinds.count("qr") == 1
    with pytest.raises(QrNotAvailable):
        await admin.get_qr(session_id)


async def test_qr_rotates_on_whatsapp_schedule_then_retries_then_fails(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", qr_max_retries=1, pairing_timeout=10_000)
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=1), clock=clock)
    admin = manager.service(Caller.local_admin())
    session_id = await new_qr_session(admin, clock)
    codes = []
    for step, ttl in enumerate([60, 20, 20, 20, 20, 20], start=1):
        session = await admin.get_session(session_id)
        assert session.qr_generation == step and session.qr_attempt == 1
        qr = await admin.get_qr(session_id)
        assert (qr.expires_at - clock.now()).total_seconds() == ttl
        codes.append(qr.qr_text)
        await clock.advance(ttl - 0.5)
        assert (await admin.get_qr(session_id)).qr_text == codes[-1]  # still up just before expiry
        await clock.advance(0.5)
    assert len(set(codes)) == 6
    # The second round (one retry): a new connection with new codes.
    session = await admin.get_session(session_id)
    assert session.status is Status.QR_READY and session.qr_attempt == 2 and session.qr_generation == 1
    await clock.advance(60 + 5 * 20)
    session = await admin.get_session(session_id)
    assert session.status is Status.FAILED and session.reason == "qr_timeout"
    assert session_id not in manager.supervisor.runtimes
    evs = await events_of(manager, session_id)
    errors = [p for t, p in evs if t == "error"]
    assert errors, evs[-3:]
    assert errors[-1]["code"] == "qr_timeout"
    qr_events = [p for t, p in await events_of(manager, session_id) if t == "qr"]
    assert len(qr_events) == 12
    await manager.aclose()


async def test_pairing_timeout(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", pairing_timeout=90)
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock), clock=clock)
    admin = manager.service(Caller.local_admin())
    session_id = await new_qr_session(admin, clock)
    await clock.advance(89)
    assert (await admin.get_session(session_id)).status is Status.QR_READY
    await clock.advance(1)
    session = await admin.get_session(session_id)
    assert session.status is Status.FAILED and session.reason == "pairing_timeout"
    await manager.aclose()


async def test_engine_failure_fails_the_session_with_its_message(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    engine.fail_connects = "dial tcp: lookup web.whatsapp.com: no such host"
    session = await admin.create_session(SessionCreate(name="x"))
    await clock.advance(0)
    session = await admin.get_session(session.id)
    assert session.status is Status.FAILED
    assert session.reason == "dial tcp: lookup web.whatsapp.com: no such host"
    errors = [p for t, p in await events_of(manager, session.id) if t == "error"]
    assert errors == [{"code": "engine_error", "message": session.reason}]


async def test_connection_loss_reconnects_with_backoff_and_gives_up(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    session_id = await link(admin, clock)
    await admin.update_session(session_id, SessionUpdate(settings={"max_reconnect_attempts": 4}))
    # First a drop that heals: one reconnect.
    await admin.simulate(session_id, SimulateRequest(action="disconnect"))
    assert (await admin.get_session(session_id)).status is Status.DISCONNECTED
    await clock.advance(1)
    session = await admin.get_session(session_id)
    assert session.status is Status.CONNECTED and session.reconnect_count == 1
    # Now the network is gone: attempts back off (jittered, capped) until the limit.
    engine.fail_connects = "network unreachable"
    await admin.simulate(session_id, SimulateRequest(action="disconnect"))
    times = []
    for _ in range(4):
        before = clock.monotonic()
        while (await admin.get_session(session_id)).reconnect_attempts == len(times):
            await clock.advance(0.05)
            assert clock.monotonic() - before < 70
        times.append(clock.monotonic() - before)
    # Equal jitter: attempt n waits between half and all of base * 2**(n-1) (base 1 s).
    for n, waited in enumerate(times):
        assert 0.5 * 2**n - 0.06 <= waited <= 2**n + 0.06, (n, waited)
    await clock.advance(0)
    session = await admin.get_session(session_id)
    assert session.status is Status.FAILED and session.reason == "reconnect_exhausted"
    assert session_id not in manager.supervisor.runtimes


async def test_logout_from_phone_clears_auth_and_does_not_reconnect(
    manager: SessionManager, admin: ScopedService, settings: Settings, clock: FakeClock
) -> None:
    session_id = await link(admin, clock)
    assert settings.auth_path(session_id).exists()
    await admin.simulate(session_id, SimulateRequest(action="logout"))
    await clock.advance(120)
    session = await admin.get_session(session_id)
    assert session.status is Status.DISCONNECTED and session.reason == "logged_out" and not session.linked
    assert not settings.auth_path(session_id).exists()
    assert session_id not in manager.supervisor.runtimes
    # Starting again asks for a new QR code.
    await admin.start(session_id)
    await clock.advance(0)
    assert (await admin.get_session(session_id)).status is Status.QR_READY


async def test_stop_start_restart_logout_delete(
    manager: SessionManager, admin: ScopedService, settings: Settings, clock: FakeClock
) -> None:
    session_id = await link(admin, clock)
    stopped = await admin.stop(session_id)
    assert stopped.status is Status.STOPPED and session_id not in manager.supervisor.runtimes
    with pytest.raises(InvalidTransition):
        await admin.stop(session_id)
    await admin.start(session_id)
    await clock.advance(0)
    session = await admin.get_session(session_id)
    assert session.status is Status.CONNECTED  # resumed with its credentials: no QR
    await admin.restart(session_id)
    await clock.advance(0)
    assert (await admin.get_session(session_id)).status is Status.CONNECTED
    assert (await statuses(manager, session_id))[-3:] == ["stopped", "initializing", "connected"]
    logged_out = await admin.logout(session_id)
    assert logged_out.status is Status.DISCONNECTED and not logged_out.linked
    assert not settings.auth_path(session_id).exists()
    await admin.delete(session_id)
    with pytest.raises(SessionNotFound):
        await admin.get_session(session_id)
    assert [t for t, _ in await events_of(manager, session_id)][-1] == "deleted"
    assert session_id not in [s.id for s in await manager.store.load_sessions()]


async def test_delete_of_a_linked_session_logs_out_and_removes_auth(
    manager: SessionManager, admin: ScopedService, settings: Settings, clock: FakeClock, engine: SimulatedEngine
) -> None:
    session_id = await link(admin, clock)
    await admin.delete(session_id)
    assert not settings.auth_path(session_id).exists()
    assert session_id not in engine.sessions


async def test_per_owner_limit(manager: SessionManager, clock: FakeClock) -> None:
    alice = manager.service(Caller(owner="alice"))
    bob = manager.service(Caller(owner="bob"))
    ids = [(await alice.create_session(SessionCreate(name=f"a{i}"))).id for i in range(5)]
    with pytest.raises(SessionLimitReached) as info:
        await alice.create_session(SessionCreate(name="a5"))
    assert info.value.details == {"owner": "alice", "limit": 5}
    assert len((await alice.list_sessions(limit=None)).sessions) == 5  # nothing half-created
    parked = await alice.create_session(SessionCreate(name="parked", start=False))
    with pytest.raises(SessionLimitReached):
        await alice.start(parked.id)
    # Other owners are not affected; admins are unlimited.
    await bob.create_session(SessionCreate(name="b"))
    root = manager.service(Caller(owner="alice", admin=True))
    await root.start(parked.id)
    # The admin's start counts against alice too (6 active now); stopping two frees a slot.
    await alice.stop(ids[0])
    with pytest.raises(SessionLimitReached):
        await alice.create_session(SessionCreate(name="a6"))
    await alice.stop(ids[1])
    await alice.create_session(SessionCreate(name="a6"))


async def test_owners_see_only_their_sessions(manager: SessionManager, clock: FakeClock) -> None:
    alice = manager.service(Caller(owner="alice"))
    bob = manager.service(Caller(owner="bob"))
    a = await alice.create_session(SessionCreate(name="a", start=False))
    for call in (bob.get_session, bob.start, bob.stop, bob.delete, bob.logout, bob.get_qr):
        with pytest.raises(SessionNotFound):
            await call(a.id)
    assert (await bob.list_sessions()).total == 0
    assert (await manager.service(Caller.local_admin()).list_sessions()).total == 1
    assert await bob.list_events() == []
    with pytest.raises(SessionNotFound):
        bob.subscribe(session_id=a.id)


async def test_list_filters_sorts_and_pages(admin: ScopedService, clock: FakeClock) -> None:
    for name in ["delta", "alpha", "charlie", "bravo"]:
        await admin.create_session(SessionCreate(name=name, start=name in ("alpha", "bravo")))
    await clock.advance(0)
    page = await admin.list_sessions(sort="name", limit=2, offset=1)
    assert [s.name for s in page.sessions] == ["bravo", "charlie"] and page.total == 4
    ready = await admin.list_sessions(status=Status.QR_READY, sort="name")
    assert [s.name for s in ready.sessions] == ["alpha", "bravo"]
    assert [s.name for s in (await admin.list_sessions(query="CHAR")).sessions] == ["charlie"]
    assert [s.name for s in (await admin.list_sessions(query="stopped", sort="name")).sessions] == ["charlie", "delta"]
    with pytest.raises(ValidationFailed):
        await admin.list_sessions(sort="nope")


async def test_names_are_unique_per_owner(manager: SessionManager) -> None:
    alice = manager.service(Caller(owner="alice"))
    await alice.create_session(SessionCreate(name="shop", start=False))
    with pytest.raises(Conflict):
        await alice.create_session(SessionCreate(name="shop", start=False))
    await manager.service(Caller(owner="bob")).create_session(SessionCreate(name="shop", start=False))


async def test_link_by_phone_number(manager: SessionManager, admin: ScopedService, clock: FakeClock) -> None:
    session = await admin.create_session(SessionCreate(name="p", start=False))
    code = await asyncio.wait_for(_pair(admin, clock, session.id, "+1 (415) 555-0123"), 5)
    assert len(code.code) == 8 and code.code.isalnum()
    session = await admin.get_session(session.id)
    assert session.status is Status.QR_READY and session.pair_code == code.code
    with pytest.raises(QrNotAvailable):
        await admin.get_qr(session.id)
    pair_events = [p for t, p in await events_of(manager, session.id) if t == "pair_code"]
    assert pair_events == [{"code": code.code, "expires_at": pair_events[0]["expires_at"], "phone_number": "14155550123"}]
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    await clock.advance(0)
    session = await admin.get_session(session.id)
    assert session.status is Status.CONNECTED and session.phone_number == "14155550123"
    with pytest.raises(ValidationFailed):
        await admin.request_pair_code(session.id, "12")


async def _pair(admin: ScopedService, clock: FakeClock, session_id: str, phone: str):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(admin.request_pair_code(session_id, phone))
    while not task.done():
        await clock.advance(0)
    return task.result()


async def test_create_with_phone_link_method(admin: ScopedService, clock: FakeClock) -> None:
    session = await admin.create_session(
        SessionCreate(name="byphone", link_method="phone", phone_number="+4915112345678")
    )
    await clock.advance(0)
    session = await admin.get_session(session.id)
    assert session.status is Status.QR_READY and session.pair_code and session.qr_generation == 0


async def test_messages(manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock) -> None:
    session_id = await link(admin, clock)
    sent = await admin.send_message(session_id, "+14155550123", "hello")
    assert sent.status.value == "sent" and sent.message_id and sent.chat == "14155550123"
    await admin.simulate(session_id, SimulateRequest(action="message", text="hi back", chat="14155550123"))
    engine.fail_sends = "recipient not on WhatsApp"
    with pytest.raises(Exception, match="recipient not on WhatsApp"):
        await admin.send_message(session_id, "+14155550123", "again")
    session = await admin.get_session(session_id)
    assert (session.messages_sent, session.messages_received, session.messages_failed) == (1, 1, 1)
    page = await admin.list_messages(session_id)
    assert page.total == 3
    assert [(m.direction.value, m.status.value, m.text) for m in page.messages] == [
        ("out", "failed", "again"), ("in", "received", "hi back"), ("out", "sent", "hello"),
    ]
    assert [p["status"] for t, p in await events_of(manager, session_id) if t == "message"] == ["sent", "received", "failed"]
    await admin.stop(session_id)
    with pytest.raises(SessionNotConnected):
        await admin.send_message(session_id, "+14155550123", "x")


async def test_restore_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated")
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock), clock=clock)
    admin = manager.service(Caller.local_admin())
    linked = await link(admin, clock, "linked")
    pairing = await new_qr_session(admin, clock, "pairing")
    stopped = (await admin.create_session(SessionCreate(name="stopped", start=False))).id
    await manager.aclose()
    parked = {s.id: s for s in await _load(settings)}
    assert parked[linked].status is Status.DISCONNECTED and parked[linked].reason == "shutdown"
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock), clock=clock)
    admin = manager.service(Caller.local_admin())
    await clock.advance(0)  # the restore runs in the background: it queues the sessions
    await clock.advance(JITTER)  # linked ones reconnect after a random delay up to JITTER
    assert (await admin.get_session(linked)).status is Status.CONNECTED
    assert "qr" not in [t for t, _ in (await events_of(manager, linked))[-3:]]
    assert (await admin.get_session(pairing)).status is Status.QR_READY  # a fresh code
    assert (await admin.get_session(stopped)).status is Status.STOPPED
    await manager.aclose()


async def _load(settings: Settings):  # type: ignore[no-untyped-def]
    from watui.stores.sqlite import Store

    store = await Store.open(settings.db_path)
    try:
        return await store.load_sessions()
    finally:
        await store.close()


async def test_no_task_leaks(manager: SessionManager, admin: ScopedService, clock: FakeClock) -> None:
    def session_tasks() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() if t.get_name().startswith("watui-session-") and not t.done()}

    baseline = session_tasks()
    ids = [await link(admin, clock, f"s{i}") for i in range(4)]
    pairing = await new_qr_session(admin, clock, "pairing")
    assert len(session_tasks() - baseline) == 5
    await admin.stop(ids[0])
    await admin.delete(ids[1])
    await admin.logout(ids[2])
    await admin.simulate(ids[3], SimulateRequest(action="logout"))
    await admin.simulate(pairing, SimulateRequest(action="fail"))
    await clock.advance(1)
    assert (await admin.get_session(pairing)).status is Status.FAILED
    await asyncio.sleep(0)
    assert session_tasks() - baseline == set()
    assert manager.supervisor.runtimes == {} and manager.registry.active == {}


async def test_simulate_refuses_what_the_phone_cannot_do(admin: ScopedService, clock: FakeClock) -> None:
    session = await admin.create_session(SessionCreate(name="idle", start=False))
    with pytest.raises(InvalidTransition):
        await admin.simulate(session.id, SimulateRequest(action="scan"))
    session_id = await new_qr_session(admin, clock, "pairing")
    with pytest.raises(InvalidTransition):
        await admin.simulate(session_id, SimulateRequest(action="message"))


async def test_simulate_is_not_found_with_the_real_engine(tmp_path: Path) -> None:
    class Fake:
        name = "neonize"
        plays_phone = False

        async def has_auth(self, *a: object) -> bool:
            return False

        async def aclose(self) -> None:
            return None

    manager = await SessionManager.open(Settings(data_dir=tmp_path), engine=Fake())  # type: ignore[arg-type]
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="x", start=False))
    with pytest.raises(NotFound):
        await admin.simulate(session.id, SimulateRequest(action="scan"))
    await manager.aclose()


async def test_every_event_carries_owner_and_status_events_chain(manager: SessionManager, clock: FakeClock) -> None:
    alice = manager.service(Caller(owner="alice"))
    session = await alice.create_session(SessionCreate(name="x"))
    await clock.advance(0)
    await alice.simulate(session.id, SimulateRequest(action="scan"))
    rows = await manager.store.read_events(session_id=session.id)
    assert {e.owner for e in rows} == {"alice"}
    chain = [e.payload for e in rows if e.type is EventType.STATUS]
    for before, after in itertools.pairwise(chain):
        assert before["to"] == after["from"]


async def test_concurrent_creates_cannot_share_a_name_and_renames_free_it(manager: SessionManager) -> None:
    alice = manager.service(Caller(owner="alice"))
    results = await asyncio.gather(
        *(alice.create_session(SessionCreate(name="same", start=False)) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
    first = next(r for r in results if not isinstance(r, BaseException))
    await alice.update_session(first.id, SessionUpdate(name="renamed"))
    await alice.create_session(SessionCreate(name="same", start=False))  # the old name is free again
    with pytest.raises(Conflict):
        await alice.create_session(SessionCreate(name="renamed", start=False))
    await alice.delete(first.id)
    await alice.create_session(SessionCreate(name="renamed", start=False))
