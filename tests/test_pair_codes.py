"""Linking windows: a pairing code lives 160 s (whatsmeow) and expires visibly; when WhatsApp
closes the window early (its QR channel's "timeout"), the next round starts at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.base import PairingWindowClosed
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.models import Caller, PairCode, SessionCreate


async def open_manager(tmp_path: Path, clock: FakeClock, **overrides: object) -> SessionManager:
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "engine": "simulated", "sqlite_synchronous": "OFF",
         "pairing_timeout": 10_000, **overrides}
    )
    return await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=2), clock=clock)


async def pair(admin: ScopedService, clock: FakeClock, session_id: str, phone: str) -> PairCode:
    task = asyncio.create_task(admin.request_pair_code(session_id, phone))
    while not task.done():
        await clock.advance(0)
    return task.result()


async def pair_code_events(manager: SessionManager, session_id: str) -> list[dict[str, object]]:
    rows = await manager.store.read_events(session_id=session_id, types=[EventType.PAIR_CODE])
    return [e.payload for e in rows]


async def test_a_pairing_code_expires_after_160_s_and_a_new_one_replaces_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    manager = await open_manager(tmp_path, clock, qr_max_retries=1)
    assert manager.settings.pair_code_ttl == 160
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="byphone", start=False))
    first = await pair(admin, clock, session.id, "+49 151 1234 5678")
    assert (first.expires_at - clock.now()).total_seconds() == 160
    await clock.advance(159)
    assert (await admin.get_session(session.id)).pair_code == first.code
    await clock.advance(1)
    # The dead code is gone at once and a new one for the same number is on screen.
    current = await admin.get_session(session.id)
    assert current.status is Status.QR_READY and current.pair_code not in (None, first.code)
    assert current.pair_code_expires_at is not None
    assert (current.pair_code_expires_at - clock.now()).total_seconds() == 160
    events = await pair_code_events(manager, session.id)
    assert [e["code"] for e in events] == [first.code, current.pair_code]
    assert {e["phone_number"] for e in events} == {"4915112345678"}
    # After the retries: failed, with a reason that says what happened.
    await clock.advance(160)
    final = await admin.get_session(session.id)
    assert final.status is Status.FAILED and final.reason == "pair_code_timeout"
    assert final.pair_code is None
    errors = await manager.store.read_events(session_id=session.id, types=[EventType.ERROR])
    assert [e.payload["code"] for e in errors] == ["pair_code_timeout"]
    assert "pairing code" in str(errors[0].payload["message"])
    assert session.id not in manager._runtimes
    await manager.aclose()


async def test_a_closed_window_replaces_the_pairing_code_at_once(tmp_path: Path, clock: FakeClock) -> None:
    manager = await open_manager(tmp_path, clock)
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="early", start=False))
    first = await pair(admin, clock, session.id, "+14155550123")
    await clock.advance(30)
    manager.engine.phone(session.id).report(PairingWindowClosed())  # type: ignore[attr-defined]
    await clock.advance(0)  # handled: a new connection is made...
    await clock.advance(0)  # ...and its socket opens
    current = await admin.get_session(session.id)
    assert current.status is Status.QR_READY and current.pair_code not in (None, first.code)
    assert current.qr_attempt == 2
    await manager.aclose()


async def test_a_closed_window_starts_a_new_qr_round_and_a_stale_one_is_ignored(
    tmp_path: Path, clock: FakeClock
) -> None:
    manager = await open_manager(tmp_path, clock)
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="qr"))
    await clock.advance(0)
    await clock.advance(60)  # the second code is up
    assert (await admin.get_session(session.id)).qr_generation == 2
    phone = manager.engine.phone(session.id)  # type: ignore[attr-defined]
    phone.report(PairingWindowClosed())
    phone.report(PairingWindowClosed())  # from the same round: must not cost a second round
    await clock.advance(0)
    await clock.advance(0)
    current = await admin.get_session(session.id)
    assert current.status is Status.QR_READY
    assert (current.qr_attempt, current.qr_generation) == (2, 1)  # round two, its first code
    await manager.aclose()
