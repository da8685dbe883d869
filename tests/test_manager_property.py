"""Random sequences of actions, engine facts and time through the manager.

After every step the persisted sessions equal the in-memory ones, and every status change in
the log is a row of the transition table, forming one unbroken chain per session.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.errors import WatuiError
from watui.machine import TRANSITIONS, Status, Trigger, reachable
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate, SimulateRequest
from watui.stores.sqlite import Store

ACTIONS = ["start", "stop", "restart", "logout", "delete", "scan", "disconnect", "phone_logout", "fail",
           "message", "send", "pair"]
step = st.one_of(
    st.tuples(st.just("create"), st.booleans()),
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 2)),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 1.0, 20.0, 61.0, 150.0])),
)
LEGAL = {(source.value, rule.target.value) for (source, _), rule in TRANSITIONS.items() if rule.target is not None}


async def run(steps: list[tuple[str, object]]) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        config = Settings(
            data_dir=Path(tmp), engine="simulated", pairing_timeout=200, qr_max_retries=1,
            max_active_sessions_per_owner=2, sqlite_synchronous="OFF",
        )
        manager = await SessionManager.open(config, engine=SimulatedEngine(clock=clock, seed=3), clock=clock)
        svc = manager.service(Caller(owner="o"))
        names = 0
        for action, arg in steps:
            ids = list(manager.registry.sessions)
            target = ids[int(arg) % len(ids)] if ids and isinstance(arg, int) and not isinstance(arg, bool) else None
            try:
                if action == "create":
                    names += 1
                    await svc.create_session(SessionCreate(name=f"s{names}", start=bool(arg)))
                elif action == "wait":
                    await clock.advance(float(arg))  # type: ignore[arg-type]
                elif target is None:
                    continue
                elif action in ("start", "stop", "restart", "logout", "delete"):
                    await getattr(svc, action)(target)
                elif action == "send":
                    await svc.send_message(target, "+14155550123", "hi")
                elif action == "pair":
                    task = asyncio.create_task(svc.request_pair_code(target, "+14155550123"))
                    while not task.done():
                        await clock.advance(0)
                    task.result()
                else:
                    sim = {"phone_logout": "logout"}.get(action, action)
                    await svc.simulate(target, SimulateRequest(action=sim))  # type: ignore[arg-type]
            except WatuiError:
                pass  # a refusal is a fine outcome; the invariants below must still hold
            await clock.advance(0)
            await check(manager)
        await manager.aclose()
        await check_persisted_chain(config)


async def check(manager: SessionManager) -> None:
    persisted = {s.id: s for s in await manager.store.load_sessions()}
    assert persisted == manager.registry.sessions
    possible = reachable(Status.STOPPED)
    for session in persisted.values():
        assert session.status in possible
        # Only sessions with a runtime may be running.
        if session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING, Status.CONNECTED):
            assert session.id in manager.supervisor.runtimes, session
    for session_id in manager.supervisor.runtimes:
        assert session_id in persisted


async def check_persisted_chain(config: Settings) -> None:
    store = await Store.open(config.db_path)
    try:
        events = await store.read_events(limit=10**6)
        sessions = {s.id: s for s in await store.load_sessions()}
    finally:
        await store.close()
    last: dict[str, str | None] = {}
    for event in events:
        if event.type.value == "status":
            before, after = event.payload["from"], event.payload["to"]
            if before is None:
                assert after == "stopped"
            else:
                assert (before, after) in LEGAL, (before, after)
                assert last.get(event.session_id) == before
            last[event.session_id] = after
        if event.type.value == "deleted":
            last.pop(event.session_id, None)
    for session_id, status in last.items():
        assert sessions[session_id].status.value == status
    # A clean shutdown parks running sessions: nothing is left "running" on disk.
    assert all(s.status.value not in ("initializing", "qr_ready", "connecting", "connected") for s in sessions.values())
    assert Trigger.SHUTDOWN  # the parking transition exists in the table


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=30))
def test_random_sequences_keep_memory_store_and_table_in_agreement(steps: list[tuple[str, object]]) -> None:
    asyncio.run(run(steps))
