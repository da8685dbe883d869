"""Engine hosts with the simulated engine: real host processes, no network.

The manager, store and bus run here; every session's engine runs in a child process, and
the tests kill those processes the way the OOM killer would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from hosts_helpers import hosted, open_manager, pid_alive, wait_for

from watui.engines.base import EngineEvent, PhoneAction, QrCodeIssued, SessionConnected
from watui.engines.hosts.supervisor import HostProcess
from watui.machine import EventType, Status
from watui.manager import ScopedService
from watui.models import Caller, Event, Session, SessionCreate, SimulateRequest


def act(action: str, **fields: str) -> SimulateRequest:
    return SimulateRequest.model_validate({"action": action, **fields})


async def status_of(admin: ScopedService, session: Session) -> Status:
    return (await admin.get_session(session.id)).status


async def linked(admin: ScopedService, names: list[str]) -> list[Session]:
    """Create sessions and scan their QR codes with the simulated phone."""
    sessions = [await admin.create_session(SessionCreate(name=name)) for name in names]
    for session in sessions:
        await wait_for(lambda s=session: _is(admin, s, Status.QR_READY), f"{session.name} shows a QR code")
        await admin.simulate(session.id, act("scan"))
    for session in sessions:
        await wait_for(lambda s=session: _is(admin, s, Status.CONNECTED), f"{session.name} connected")
    await admin.manager.drain_all()  # every event so far is committed
    return sessions


async def failed_with(admin: ScopedService, session: Session) -> list[Event]:
    """Wait for the session to fail, then its committed error events (memory says failed as
    the write begins, so wait for that commit before reading the log)."""
    await wait_for(lambda: _is(admin, session, Status.FAILED), "failed")
    await admin.manager.drain_all()
    return [e for e in await admin.list_events(session_id=session.id) if e.type is EventType.ERROR]


async def _is(admin: ScopedService, session: Session, status: Status) -> bool:
    return await status_of(admin, session) is status


async def test_hosts_start_on_demand_hold_their_sessions_and_stop_when_empty(tmp_path: Path) -> None:
    engine = hosted(sessions_per_host=2, idle_grace=0.2)
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        assert await admin.engine_hosts() == []  # nothing runs: no host
        sessions = await linked(admin, ["a", "b", "c"])
        hosts = await admin.engine_hosts()
        assert len(hosts) == 2
        assert sorted(sid for h in hosts for sid in h.sessions) == sorted(s.id for s in sessions)
        assert all(h.pid and h.pid != os.getpid() and pid_alive(h.pid) for h in hosts)
        assert [(h.restarts, h.crashes) for h in hosts] == [(0, 0), (0, 0)]
        assert [h.connects for h in hosts] == [2, 1]

        # A message from the phone travels through the host into the store.
        await admin.simulate(sessions[0].id, act("message", text="through the pipe"))
        page = await admin.list_messages(sessions[0].id)
        assert [m.text for m in page.messages] == ["through the pipe"]
        sent = await admin.send_message(sessions[1].id, "+14155550100", "and back")
        assert sent.message_id and sent.status.value == "sent"

        pids = [h.pid for h in hosts]
        for session in sessions:
            await admin.stop(session.id)
        await wait_for(lambda: not engine.hosts(), "empty hosts to stop")
        await wait_for(lambda: not any(pid_alive(p) for p in pids if p), "host processes to exit")

        # On demand again: a start brings a host back.
        await admin.start(sessions[0].id)
        await wait_for(lambda: _is(admin, sessions[0], Status.CONNECTED), "a resumes its link")
        # A new process in the slot (a restart), but the one before stopped idle: no crash.
        assert [(h.restarts, h.crashes) for h in engine.hosts()] == [(1, 0)]
    finally:
        await manager.aclose()
    assert engine.hosts() == []


async def test_kill_9_of_a_host_costs_only_its_sessions_and_they_come_back(tmp_path: Path) -> None:
    engine = hosted(sessions_per_host=2)
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        sessions = await linked(admin, ["a1", "a2", "b1", "b2"])
        hosts = engine.hosts()
        assert len(hosts) == 2
        victim, survivor = hosts
        hit = [s for s in sessions if s.id in victim.sessions]
        spared = [s for s in sessions if s.id in survivor.sessions]
        assert len(hit) == len(spared) == 2

        mark = manager.store.last_committed_id
        seen: list[Event] = []
        subscription = admin.subscribe(after_id=mark)

        async def follow() -> None:
            async for event in subscription:
                seen.append(event)

        follower = asyncio.get_running_loop().create_task(follow())
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)

        def crash_reported() -> bool:
            return {e.session_id for e in seen if e.type is EventType.DISCONNECTED
                    and e.payload["reason"] == "engine_crashed"} == {s.id for s in hit}

        # watui learns of the crash from the pipe's end, not from a timer; how soon is measured
        # by `python -m bench hosts` (a loaded machine stretches any bound a test could set).
        await wait_for(crash_reported, "disconnected/engine_crashed for the victim's sessions")
        for session in hit:
            await wait_for(lambda s=session: _is(admin, s, Status.CONNECTED), f"{session.name} reconnected")
        after = await admin.get_session(hit[0].id)
        assert after.reconnect_count == 1

        # They run in a live host now, and the phone still reaches them.
        assert not pid_alive(victim.pid)
        placed = {sid: h for h in engine.hosts() for sid in h.sessions}
        assert all(placed[s.id].id != victim.id for s in hit)
        await admin.simulate(hit[0].id, act("message", text="after the crash"))
        assert (await admin.list_messages(hit[0].id)).messages[0].text == "after the crash"

        # The other host's sessions saw nothing at all.
        await manager.drain_all()
        assert not [e for e in seen if e.session_id in {s.id for s in spared}]
        assert all([await _is(admin, s, Status.CONNECTED) for s in spared])

        # Nothing lost: the live stream and the log hold the same events, in order.
        logged = await admin.list_events(after_id=mark, limit=1000)
        await wait_for(lambda: len(seen) >= len(logged), "the stream to catch up with the log")
        assert [e.id for e in seen] == [e.id for e in logged]
        assert {e.type for e in logged} >= {EventType.DISCONNECTED, EventType.STATUS, EventType.CONNECTED}
        follower.cancel()
        await subscription.aclose()
    finally:
        await manager.aclose()


async def test_a_session_still_linking_fails_with_engine_crashed(tmp_path: Path) -> None:
    engine = hosted()
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        session = await admin.create_session(SessionCreate(name="linking"))
        await wait_for(lambda: _is(admin, session, Status.QR_READY), "a QR code")
        engine.crash_host(engine.hosts()[0].id, "abort")
        errors = await failed_with(admin, session)
        assert [e.payload["code"] for e in errors] == ["engine_crashed"]
        assert "SIGABRT" in errors[0].payload["message"]
        # Starting it again places it in a fresh host.
        await admin.start(session.id)
        await wait_for(lambda: _is(admin, session, Status.QR_READY), "a QR code from a fresh host")
        assert (engine.hosts()[0].restarts, engine.hosts()[0].crashes) == (1, 1)
    finally:
        await manager.aclose()


@pytest.mark.parametrize("call", ["open", "connect"])
async def test_a_host_that_dies_under_a_connect_fails_its_session_with_engine_crashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """The host dies with the session's ``open`` or ``connect`` call still in its pipe: the
    session reports the crash as any linking session does, not as a refused connect."""
    crashes = ["abort"]
    real_call = HostProcess.call

    async def crash_ahead(host: HostProcess, op: str, session_id: str = "", **args: Any) -> Any:
        if op == call and crashes:
            host.send("crash", how=crashes.pop())  # queued before the call: the host never reads it
        return await real_call(host, op, session_id, **args)

    monkeypatch.setattr(HostProcess, "call", crash_ahead)
    engine = hosted()
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        session = await admin.create_session(SessionCreate(name="dialling"))
        errors = await failed_with(admin, session)
        assert [e.payload["code"] for e in errors] == ["engine_crashed"]
        assert "SIGABRT" in errors[0].payload["message"]
        await admin.start(session.id)
        await wait_for(lambda: _is(admin, session, Status.QR_READY), "a QR code from a fresh host")
    finally:
        await manager.aclose()


@pytest.mark.parametrize("old_placed", [False, True], ids=["old-idle", "old-in-the-host"])
async def test_an_engine_session_closed_late_leaves_its_successor_alone(tmp_path: Path, old_placed: bool) -> None:
    """A runtime torn down in the background (``finish_later``) closes its engine session while
    a restart connects the next one for the same session: the old one's close must take
    neither watui's record of the new one nor, when both are in one host (their ``close`` and
    ``open`` go out in one write and are read together), the new one's session there."""
    engine = hosted()
    facts: list[EngineEvent] = []
    try:
        old = engine.session("ses_late", lambda event: None, auth_path=tmp_path / "late")
        if old_placed:
            await old.connect()
        new = engine.session("ses_late", facts.append, auth_path=tmp_path / "late")
        await asyncio.gather(old.close(), new.connect())
        await wait_for(lambda: any(isinstance(f, QrCodeIssued) for f in facts), "a QR code")
        await engine.play_phone("ses_late", PhoneAction("scan"))
        await wait_for(lambda: any(isinstance(f, SessionConnected) for f in facts), "linked")
    finally:
        await engine.aclose()


async def test_hosts_recycle_after_their_connect_budget(tmp_path: Path) -> None:
    engine = hosted(recycle_connects=3, idle_grace=5.0)
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        session, = await linked(admin, ["cycler"])
        first = engine.hosts()[0]
        for _ in range(2):
            await admin.restart(session.id)
            await wait_for(lambda: _is(admin, session, Status.CONNECTED), "reconnected")
        # Three connects: the first host drained; the next connect went to a fresh one.
        await admin.restart(session.id)
        await wait_for(lambda: _is(admin, session, Status.CONNECTED), "reconnected in a fresh host")
        hosts = engine.hosts()
        assert [h.id for h in hosts] != [first.id]
        assert hosts[-1].sessions == [session.id] and hosts[-1].restarts == 1
        assert hosts[-1].crashes == 0  # a drained host is no crash
        # The supervisor forgets a host once it has reaped it; an exited process is gone from
        # /proc (or a zombie) a moment before that.
        await wait_for(lambda: [h.id for h in engine.hosts()] == [hosts[-1].id], "the drained host to stop")
        assert first.pid is not None and not pid_alive(first.pid)
    finally:
        await manager.aclose()


async def test_host_output_goes_to_the_log_not_to_the_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    engine = hosted()
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        session = await admin.create_session(SessionCreate(name="noisy"))
        await wait_for(lambda: _is(admin, session, Status.QR_READY), "a QR code")
        host = engine.hosts()[0]
        engine.crash_host(host.id, "abort")
        await wait_for(lambda: _is(admin, session, Status.FAILED), "failed")

        def last_words_logged() -> bool:
            return any("crashing on purpose" in r.getMessage() for r in caplog.records
                       if r.name == f"watui.engines.hosts.{host.id}")

        # Copied before the session is told, unless stderr outlasts STDERR_DRAIN (a loaded
        # machine): wait for the line itself.
        await wait_for(last_words_logged, "the host's last words in watui's log")
        out, err = capfd.readouterr()
        assert "crashing on purpose" not in out + err
    finally:
        await manager.aclose()


async def test_playing_the_phone_is_refused_for_a_session_not_running(tmp_path: Path) -> None:
    engine = hosted()
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        assert admin.simulated
        session = await admin.create_session(SessionCreate(name="idle", start=False))
        from watui.errors import InvalidTransition

        with pytest.raises(InvalidTransition):
            await admin.simulate(session.id, act("scan"))
        await admin.start(session.id)
        await wait_for(lambda: _is(admin, session, Status.QR_READY), "a QR code")
        with pytest.raises(InvalidTransition):
            await admin.simulate(session.id, act("message", text="not connected yet"))
    finally:
        await manager.aclose()
