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
    from watui.engines.neonize_engine import NeonizeEngine

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
    assert session.id not in manager._runtimes
    started = time.monotonic()
    await manager.aclose()
    assert time.monotonic() - started < 5
