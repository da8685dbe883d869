"""A real neonize session through the manager, on a machine with no route to WhatsApp."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from watui.config import Settings
from watui.machine import Status
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate


async def test_real_engine_fails_cleanly_with_the_dial_error(tmp_path: Path) -> None:
    from watui.engines.neonize import NeonizeEngine

    settings = Settings(data_dir=tmp_path, engine="neonize")
    manager = await SessionManager.open(settings, engine=NeonizeEngine(connect_timeout=15))
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="real"))
    deadline = time.monotonic() + 25
    while (session := await admin.get_session(session.id)).status is not Status.FAILED:
        assert time.monotonic() < deadline, session
        await asyncio.sleep(0.05)
    assert session.reason and session.reason.startswith("cannot reach WhatsApp: "), session.reason
    errors = [e.payload for e in await admin.list_events(session_id=session.id) if e.type.value == "error"]
    assert [e["message"] for e in errors] == [session.reason]
    # The engine's own words go with the event, beside the message that rewords them.
    assert "failed to dial whatsapp web websocket" in errors[0]["details"]
    assert session.id not in manager.supervisor.runtimes
    started = time.monotonic()
    await manager.aclose()
    assert time.monotonic() - started < 5


async def test_sessions_stopped_while_queued_never_dial(tmp_path: Path) -> None:
    """Real neonize through the manager, no network: twelve sessions start at once and queue
    at the engine's start gate (held here, as another attempt's start would hold it); once
    they are stopped, none of them may dial any more."""
    import socket
    import threading

    from watui.engines.neonize import NeonizeEngine
    from watui.engines.neonize.go import _StartGate

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    listener.settimeout(0.05)
    dials: list[float] = []
    conns: list[socket.socket] = []
    running = True

    def accept() -> None:  # a proxy that never answers, noting each dial
        while running:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            dials.append(time.monotonic())
            conns.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = Settings(data_dir=tmp_path, engine="neonize", sqlite_synchronous="OFF")
    engine = NeonizeEngine(proxy=proxy, connect_timeout=30)
    manager = await SessionManager.open(settings, engine=engine)
    admin = manager.service(Caller.local_admin())
    try:
        _StartGate.lock.acquire()
        try:
            sessions = await asyncio.gather(
                *(admin.create_session(SessionCreate(name=f"q{i}")) for i in range(12))
            )
            runs = [engine_session._run for engine_session in list(engine._sessions)]
            assert len(runs) == 12 and all(run is not None and not run.called for run in runs)
            await asyncio.gather(*(admin.stop(s.id) for s in sessions))
        finally:
            _StartGate.lock.release()
        deadline = time.monotonic() + 10
        while not all(run is not None and run.finished.is_set() for run in runs):
            assert time.monotonic() < deadline, "queued attempts did not leave the queue"
            await asyncio.sleep(0.02)
        assert not any(run is not None and run.called for run in runs)
        assert dials == []
    finally:
        await manager.aclose()
        running = False
        thread.join(2)
        for conn in conns:
            conn.close()
        listener.close()
