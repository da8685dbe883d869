"""Benchmark: what running sessions in engine host processes costs, against running them inline.

    .venv/bin/python bench/bench_hosts.py [--sessions 20] [--messages 100] [--dialling 20]

Three figures, each with its baseline measured in the same run:

1. Messages per second through the manager, with the simulated engine inline and in one engine
   host: ``--sessions`` linked sessions, each receiving ``--messages`` messages from the phone,
   first one after another per session (lockstep: each waits for the previous to be stored, so
   the pipe's round trip counts in full), then as a burst with 200 in flight. Every message
   crosses the pipe as a call and an engine fact, and is stored and published as inline.
2. Memory of a real neonize host (no network: each dial goes to a local port that never
   answers, so every session sits dialling): the host's RSS with one session, then with
   ``--dialling`` sessions; the difference per session, against the watui process's own RSS.
3. Host crash to reconnected: ``--sessions`` linked sessions in one host, the host killed with
   SIGKILL; the time until the first ``disconnected/engine_crashed`` and until all are
   connected again (reconnect back-off 0), against the same sessions dropped by the simulated
   network inline and reconnecting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._util import Figure, mib, print_table, rss_bytes, run_pool, wait_until  # noqa: E402
from watui.config import Settings  # noqa: E402
from watui.engines.base import Engine  # noqa: E402
from watui.engines.hosts import HostedEngine  # noqa: E402
from watui.engines.spec import EngineSpec, build_inline  # noqa: E402
from watui.machine import EventType, Status  # noqa: E402
from watui.manager import ScopedService, SessionManager  # noqa: E402
from watui.models import Caller, Session, SessionCreate, SimulateRequest  # noqa: E402

PHONE = {"connect_latency": 0.01, "link_latency": 0.01, "seed": "bench"}
IN_FLIGHT = 200
"""Messages in flight at once in the burst run (the phone does not wait for the last one)."""


def act(action: str, **fields: str) -> SimulateRequest:
    return SimulateRequest.model_validate({"action": action, **fields})


async def open_manager(data_dir: Path, engine: Engine) -> SessionManager:
    settings = Settings(data_dir=data_dir, engine="simulated", sqlite_synchronous="NORMAL",
                        reconnect_base_delay=0.0, reconnect_max_delay=0.0)
    return await SessionManager.open(settings, engine=engine)


async def link_all(manager: SessionManager, admin: ScopedService, n: int) -> list[Session]:
    sessions = [await admin.create_session(SessionCreate(name=f"s{i}")) for i in range(n)]
    for s in sessions:
        await wait_until(lambda s=s: manager.registry.sessions[s.id].status is Status.QR_READY, timeout=30)
        await admin.simulate(s.id, act("scan"))
    await wait_until(lambda: all(manager.registry.sessions[s.id].status is Status.CONNECTED for s in sessions), timeout=30)
    await manager.drain_all()
    return sessions


# ==================================================================== 1. messages/s


async def messages_per_second(
    engine: Engine, data_dir: Path, sessions: int, messages: int
) -> tuple[float, float]:
    """(msg/s with one message in flight per session, msg/s with ``IN_FLIGHT`` in flight)."""
    manager = await open_manager(data_dir, engine)
    admin = manager.service(Caller.local_admin())
    try:
        linked = await link_all(manager, admin, sessions)

        async def phone(session: Session) -> None:
            for n in range(messages):
                await admin.simulate(session.id, act("message", text=f"message {n}"))

        started = time.perf_counter()
        await asyncio.gather(*(phone(s) for s in linked))
        await manager.drain_all()
        lockstep = sessions * messages / (time.perf_counter() - started)

        items = [(s, n) for n in range(messages) for s in linked]
        started = time.perf_counter()
        errors = await run_pool(
            items, lambda item: admin.simulate(item[0].id, act("message", text=f"burst {item[1]}")),
            concurrency=IN_FLIGHT,
        )
        await manager.drain_all()
        burst = len(items) / (time.perf_counter() - started)
        assert not errors, errors[:3]
        stored = sum([(await admin.list_messages(s.id, limit=1)).total for s in linked])
        assert stored == 2 * sessions * messages, (stored, 2 * sessions * messages)
        return lockstep, burst
    finally:
        await manager.aclose()


# ==================================================================== 2. neonize host RSS


def pid_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no RSS for pid {pid}")


async def neonize_host_rss(data_dir: Path, dialling: int) -> tuple[float, float, float]:
    """(host RSS with 1 session, per additional dialling session, watui's own RSS), bytes."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    proxy = f"socks5://127.0.0.1:{hole.getsockname()[1]}"
    # start_grace: an attempt that never answers holds neonize's start lock this long.
    engine = HostedEngine(EngineSpec("neonize", {"proxy": proxy, "connect_timeout": 120, "start_grace": 0.2}),
                          sessions_per_host=dialling + 1)
    settings = Settings(data_dir=data_dir, engine="neonize", sqlite_synchronous="NORMAL")
    manager = await SessionManager.open(settings, engine=engine)
    admin = manager.service(Caller.local_admin())
    try:
        first = await admin.create_session(SessionCreate(name="d0"))
        await asyncio.sleep(3.0)
        pid = engine.hosts()[0].pid
        assert pid is not None
        one = pid_rss(pid)
        for i in range(1, dialling):
            await admin.create_session(SessionCreate(name=f"d{i}"))
        await asyncio.sleep(dialling * 0.2 + 3.0)
        statuses = {manager.registry.sessions[s].status for s in manager.registry.sessions}
        assert statuses == {Status.INITIALIZING}, statuses  # all still dialling
        many = pid_rss(pid)
        del first
        return one, (many - one) / max(1, dialling - 1), rss_bytes()
    finally:
        await manager.aclose()
        hole.close()


# ==================================================================== 3. crash to reconnected


async def crash_to_reconnected(data_dir: Path, sessions: int, hosted: bool) -> tuple[float, float]:
    """(seconds to the first disconnected event, seconds until all connected again)."""
    engine: Engine = (HostedEngine(EngineSpec("simulated", PHONE), sessions_per_host=sessions)
                      if hosted else build_inline(EngineSpec("simulated", PHONE)))
    manager = await open_manager(data_dir, engine)
    admin = manager.service(Caller.local_admin())
    try:
        linked = await link_all(manager, admin, sessions)
        subscription = admin.subscribe(types=frozenset({EventType.DISCONNECTED}))
        first_seen = asyncio.get_running_loop().create_task(anext(aiter(subscription)))
        started = time.perf_counter()
        if hosted:
            assert isinstance(engine, HostedEngine)
            pid = engine.hosts()[0].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        else:
            await asyncio.gather(*(admin.simulate(s.id, act("disconnect", reason="engine_crashed")) for s in linked))
        await first_seen
        noticed = time.perf_counter() - started
        await wait_until(lambda: all(manager.registry.sessions[s.id].status is Status.CONNECTED
                                     and manager.registry.sessions[s.id].reconnect_count == 1 for s in linked), timeout=30,
                         poll=0.005)
        back = time.perf_counter() - started
        await subscription.aclose()
        return noticed, back
    finally:
        await manager.aclose()


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="watui-bench-hosts-"))
    inline = await messages_per_second(build_inline(EngineSpec("simulated", PHONE)), root / "m-inline",
                                       args.sessions, args.messages)
    hosted = await messages_per_second(HostedEngine(EngineSpec("simulated", PHONE)), root / "m-hosted",
                                       args.sessions, args.messages)
    one, per_session, watui_rss = await neonize_host_rss(root / "rss", args.dialling)
    inline_noticed, inline_back = await crash_to_reconnected(root / "c-inline", args.sessions, hosted=False)
    noticed, back = await crash_to_reconnected(root / "c-hosted", args.sessions, hosted=True)
    print_table(
        f"Engine hosts ({args.sessions} sessions x {args.messages} messages; {args.dialling} dialling neonize sessions)",
        [
            Figure("messages/s, lockstep, inline (baseline)", inline[0], "msg/s", digits=0,
                   note="one message in flight per session"),
            Figure("messages/s, lockstep, in one host", hosted[0], "msg/s", digits=0),
            Figure("hosted / inline, lockstep", hosted[0] / inline[0], "x", digits=2),
            Figure(f"messages/s, {IN_FLIGHT} in flight, inline (baseline)", inline[1], "msg/s", digits=0),
            Figure(f"messages/s, {IN_FLIGHT} in flight, in one host", hosted[1], "msg/s", digits=0),
            Figure(f"hosted / inline, {IN_FLIGHT} in flight", hosted[1] / inline[1], "x", digits=2),
            Figure("neonize host RSS, one session dialling", mib(one), "MiB"),
            Figure("neonize host RSS per more dialling session", per_session / 1024, "KiB", digits=0),
            Figure("watui process RSS (baseline)", mib(watui_rss), "MiB"),
            Figure("inline drop -> first disconnected (baseline)", inline_noticed * 1000, "ms"),
            Figure("inline drop -> all reconnected (baseline)", inline_back * 1000, "ms"),
            Figure("host kill -9 -> first disconnected", noticed * 1000, "ms", goal=2000),
            Figure("host kill -9 -> all reconnected", back * 1000, "ms"),
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--dialling", type=int, default=20)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
