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
    assert session.reason and ("dial" in session.reason or "connect" in session.reason)
    errors = await admin.list_events(session_id=session.id)
    assert [e.payload["message"] for e in errors if e.type.value == "error"] == [session.reason]
    assert session.id not in manager.supervisor.runtimes
    started = time.monotonic()
    await manager.aclose()
    assert time.monotonic() - started < 5


async def test_sessions_stopped_while_queued_never_dial(tmp_path: Path) -> None:
    """Real neonize through the manager, no network: twelve sessions start at once and queue
    at the engine's start gate; once they are stopped, none of them may dial any more."""
    import socket
    import threading

    from watui.engines.neonize import NeonizeEngine

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
    engine = NeonizeEngine(proxy=proxy, start_grace=0.4, connect_timeout=30)
    manager = await SessionManager.open(settings, engine=engine)
    admin = manager.service(Caller.local_admin())
    try:
        sessions = await asyncio.gather(
            *(admin.create_session(SessionCreate(name=f"q{i}")) for i in range(12))
        )
        deadline = time.monotonic() + 15
        while not dials:
            assert time.monotonic() < deadline, "no session ever dialled"
            await asyncio.sleep(0.02)
        await asyncio.gather(*(admin.stop(s.id) for s in sessions))
        stopped_at = time.monotonic()
        await asyncio.sleep(2.0)  # five start_grace periods
        assert [t for t in dials if t > stopped_at] == []
        assert len(dials) < 6  # most never reached Neonize()
    finally:
        await manager.aclose()
        running = False
        thread.join(2)
        for conn in conns:
            conn.close()
        listener.close()
