"""Engine hosts with the real neonize engine and no route to WhatsApp.

Every dial goes to a local proxy port: a closed one (each connect fails at once) or a black
hole that accepts and never answers (a dial that hangs, as on a dead network).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosts_helpers import children, hosted, open_fds, open_manager, os_threads, pid_alive, wait_for

from watui.machine import EventType, Status
from watui.models import Caller, SessionCreate


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A SOCKS5 proxy address whose port completes TCP handshakes and then says nothing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"socks5://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def test_a_go_crash_in_one_host_leaves_the_others_running(
    tmp_path: Path, black_hole: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = hosted("neonize", options={"proxy": black_hole}, sessions_per_host=1)
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    try:
        a = await admin.create_session(SessionCreate(name="a"))
        b = await admin.create_session(SessionCreate(name="b"))
        await manager.drain_all()
        hosts = {h.sessions[0]: h for h in engine.hosts()}
        assert set(hosts) == {a.id, b.id}
        # neonize's platform probe (two `sh -c "uname -a"`) leaves no zombie behind in a host:
        # the connect that loaded neonize reaped them before it answered.
        assert [c for h in hosts.values() for c in children(h.pid or 0)] == []
        assert [(await admin.get_session(s.id)).status for s in (a, b)] == [Status.INITIALIZING] * 2
        mark = manager.store.last_committed_id

        engine.crash_host(hosts[a.id].id, "go")  # a nil-pointer panic inside neonize's Go code

        async def a_failed() -> bool:
            return (await admin.get_session(a.id)).status is Status.FAILED

        await wait_for(a_failed, "a to fail")
        # Memory says failed as its write begins; wait for the handler's write to commit.
        await manager.drain_all()
        events = await admin.list_events(after_id=mark)
        assert [(e.session_id, e.payload.get("code")) for e in events if e.type is EventType.ERROR] == [
            (a.id, "engine_crashed")
        ]
        assert not [e for e in events if e.session_id == b.id]
        assert (await admin.get_session(b.id)).status is Status.INITIALIZING
        assert pid_alive(hosts[b.id].pid or 0) and not pid_alive(hosts[a.id].pid or 0)
        # Go's own crash report reached watui's log, from the host's stderr (before the session
        # was told, unless stderr outlasted STDERR_DRAIN on a loaded machine: wait for it).
        def host_log() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == f"watui.engines.hosts.{hosts[a.id].id}"]

        await wait_for(lambda: any("nil pointer dereference" in line for line in host_log()),
                       "Go's crash report in watui's log")

        # a starts again, in a fresh host in the same slot.
        await admin.start(a.id)
        placed = {h.sessions[0]: h for h in engine.hosts()}
        assert placed[a.id].id not in (hosts[a.id].id, hosts[b.id].id)
        assert (placed[a.id].restarts, placed[a.id].crashes) == (1, 1)
    finally:
        await manager.aclose()


async def test_300_real_connect_attempts_leave_fds_and_threads_flat(tmp_path: Path) -> None:
    engine = hosted("neonize", sessions_per_host=50, recycle_connects=40, idle_grace=0.2)
    manager = await open_manager(tmp_path, engine)
    admin = manager.service(Caller.local_admin())
    seen_hosts: set[str] = set()
    try:
        sessions = [await admin.create_session(SessionCreate(name=f"s{n}", start=False)) for n in range(10)]

        async def round_of_connects() -> None:
            await asyncio.gather(*(admin.start(s.id) for s in sessions))
            seen_hosts.update(h.id for h in engine.hosts())

            async def all_failed() -> bool:
                page = await admin.list_sessions(limit=None)
                return all(s.status is Status.FAILED for s in page.sessions)

            await wait_for(all_failed, "every dial to fail")

        await round_of_connects()  # warm-up: the first host, imports, the store's caches
        await wait_for(lambda: not engine.hosts(), "the idle host to stop")
        fds, threads = open_fds(), os_threads()

        for _ in range(29):
            await round_of_connects()
        reason = (await admin.get_session(sessions[0].id)).reason or ""
        assert "connection refused" in reason  # each attempt really dialled
        await wait_for(lambda: not engine.hosts(), "every host to stop")
        assert len(seen_hosts) >= 300 // 40  # recycled: no host made more than 40 connects
        assert open_fds() <= fds + 2, (fds, open_fds())
        assert os_threads() <= threads + 2, (threads, os_threads())
    finally:
        await manager.aclose()
