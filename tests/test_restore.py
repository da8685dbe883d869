"""Start-up restore: a few connects at a time, linked sessions first, the server answering.

The sessions are written to a real store, as a previous run would have left them (linked,
parked ``disconnected`` by its shutdown); the engine is the simulated one, wrapped only to
count the connects it is asked for (from ``connect()`` to its first fact).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from watui.clock import RealClock
from watui.config import Settings
from watui.engines.base import EngineEvent, IncomingMessage, MessageReceipt, Report, SessionOptions
from watui.engines.simulated import Device, SimulatedEngine
from watui.machine import Status
from watui.manager import SessionManager
from watui.models import Caller, RestoreProgress, Session
from watui.server import BackgroundServer
from watui.stores.datadir import make_private
from watui.stores.sqlite import Store


class CountingSession:
    """One engine session whose connects are counted by its :class:`CountingEngine`."""

    def __init__(
        self, engine: CountingEngine, session_id: str, report: Report, auth_path: Path,
        options: SessionOptions | None = None,
    ) -> None:
        self.engine = engine
        self.session_id = session_id
        self.pending = False
        self.inner = engine.inner.session(session_id, self._report(report), auth_path=auth_path, options=options)

    def _report(self, report: Report) -> Report:
        def wrapped(event: EngineEvent) -> None:
            if not isinstance(event, IncomingMessage | MessageReceipt):
                self._done()
            report(event)

        return wrapped

    def _done(self) -> None:
        if self.pending:
            self.pending = False
            self.engine.in_flight -= 1

    async def connect(self) -> None:
        self.engine.order.append(self.session_id)
        self.pending = True
        self.engine.in_flight += 1
        self.engine.peak = max(self.engine.peak, self.engine.in_flight)
        await self.inner.connect()

    async def disconnect(self) -> None:
        self._done()
        await self.inner.disconnect()

    async def close(self) -> None:
        self._done()
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingEngine:
    """The simulated engine, counting connects in flight (and the most at once)."""

    name = "simulated"

    def __init__(self, inner: SimulatedEngine) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self.order: list[str] = []

    def session(
        self, session_id: str, report: Report, *, auth_path: Path, options: SessionOptions | None = None,
    ) -> CountingSession:
        return CountingSession(self, session_id, report, auth_path, options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def seed(settings: Settings, linked: int, pairing: int = 0) -> tuple[list[str], list[str]]:
    """Sessions as a previous run parked them: ``linked`` with auth, ``pairing`` without."""
    make_private(settings.data_dir)
    store = await Store.open(settings.db_path, synchronous="OFF")
    engine = SimulatedEngine()
    now = datetime.now(UTC)
    sessions = []
    for i in range(linked + pairing):
        is_linked = i < linked
        session = Session(
            id=f"ses_{i:04d}", name=f"s{i:04d}", owner="local", created_at=now, updated_at=now,
            status=Status.DISCONNECTED, reason="shutdown", autostart=True, linked=is_linked,
            phone_number=f"1555{i:07d}" if is_linked else None,
        )
        if is_linked:
            engine.save_device(settings.auth_path(session.id), Device(
                jid=f"1555{i:07d}:1@s.whatsapp.net", phone_number=f"1555{i:07d}", push_name="Ana"))
        sessions.append(session)
    # Pairing ones first in the table, so "linked first" is the restore's doing, not the order.
    sessions = sessions[linked:] + sessions[:linked]
    await store.write(sessions=sessions)
    await store.close()
    return [s.id for s in sessions if s.linked], [s.id for s in sessions if not s.linked]


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_restore_of_200_linked_sessions_respects_the_concurrency_cap(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", sqlite_synchronous="OFF")
    assert settings.restore_concurrency == 8
    linked, pairing = await seed(settings, linked=200, pairing=10)
    engine = CountingEngine(SimulatedEngine(connect_latency=0.05, receipt_delay=None))

    started = time.monotonic()
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())  # type: ignore[arg-type]
    try:
        assert time.monotonic() - started < 2  # open does not wait for the restore
        await until(lambda: manager.restore_progress is not None, 5, "the restore to start")
        progress = manager.restore_progress
        assert progress is not None and progress.total == 210 and progress.done < 210
        seen: list[RestoreProgress] = []

        def watch() -> bool:
            if manager.restore_progress is not None:
                seen.append(manager.restore_progress)
            return manager.restore_progress is None

        await until(watch, 60, "the restore to finish")
        admin = manager.service(Caller.local_admin())
        page = await admin.list_sessions(limit=None)
        statuses = {s.id: s.status for s in page.sessions}
        assert all(statuses[i] is Status.CONNECTED for i in linked)
        assert all(statuses[i] is Status.QR_READY for i in pairing)  # fresh codes to scan
        assert 1 < engine.peak <= settings.restore_concurrency, engine.peak
        assert len(engine.order) == 210
        # Linked sessions first: they take the slots before any pairing one. (A linked one
        # waits out its jitter inside its slot, so the last few may connect a little later.)
        first_pairing = min(engine.order.index(i) for i in pairing)
        assert first_pairing >= 200 - (settings.restore_concurrency - 1)
        dones = [p.done for p in seen]
        assert dones == sorted(dones) and seen[-1].total == 210  # it only moved forward
    finally:
        await manager.aclose()


async def test_the_cap_is_a_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", sqlite_synchronous="OFF", restore_concurrency=2)
    await seed(settings, linked=30)
    engine = CountingEngine(SimulatedEngine(connect_latency=0.02, receipt_delay=None))
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())  # type: ignore[arg-type]
    try:
        await until(lambda: len(engine.order) == 30 and manager.restore_progress is None, 30, "the restore")
        assert engine.peak <= 2
    finally:
        await manager.aclose()


async def test_closing_during_the_restore_leaves_the_rest_parked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", sqlite_synchronous="OFF", restore_concurrency=1)
    await seed(settings, linked=40)
    engine = CountingEngine(SimulatedEngine(connect_latency=0.05, receipt_delay=None))
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())  # type: ignore[arg-type]
    await until(lambda: len(engine.order) >= 2, 10, "two connects")
    await manager.aclose()
    assert manager.restore_progress is None
    made = len(engine.order)
    assert made < 40
    await asyncio.sleep(0.3)
    assert len(engine.order) == made  # nothing connects after the manager closed


def test_health_answers_while_restoring_and_shows_progress(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="OFF",
                        restore_concurrency=1)
    asyncio.run(seed(settings, linked=16))

    def slow_engine() -> Any:
        return SimulatedEngine(connect_latency=0.1, receipt_delay=None)

    server = BackgroundServer(settings, engine_factory=slow_engine).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            first = http.get("/v1/health")
            assert first.status_code == 200
            restoring = first.json()["restoring"]
            assert restoring is not None and restoring["total"] == 16 and restoring["done"] < 16
            deadline = time.monotonic() + 60
            while (body := http.get("/v1/health").json())["restoring"] is not None:
                assert body["restoring"]["done"] >= restoring["done"]
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert body["status"] == "ok"
    finally:
        server.stop()
