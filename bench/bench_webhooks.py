"""Benchmark: webhook deliveries per second, and how fast a backlog drains after an outage.

    .venv/bin/python bench/bench_webhooks.py [--sessions 100] [--seconds 10] [--rate 200]
                                             [--outage 60] [--synchronous FULL]

Setup: a real ``SessionManager`` on the simulated engine (real clock, production
``WebhookOptions``), ``--sessions`` linked sessions, each with its own webhook URL on one
receiver. The receiver is a minimal HTTP/1.1 server answering ``204`` in a *separate process*
(so its work is not counted against watui's event loop); it counts what it receives.

1. Throughput: every session receives messages as fast as the engine takes them for
   ``--seconds``; each message is one event and one webhook delivery. Reported: events/s the
   engine produced, deliveries/s the receiver got over the same window, and how long the tail
   took to arrive after the emitters stopped.
2. Outage: the receiver process is killed (connections are refused) while the sessions keep
   emitting ``--rate`` events/s in all. After ``--outage`` seconds the receiver comes back
   and the time until every delivery queued before that moment has arrived is measured, while
   the sessions keep emitting. With ``--outage`` shorter than 60, the backlog is topped up with
   a burst to the size a 60 s outage at ``--rate`` would produce, and the output says so (the
   probe wait after recovery is then shorter than after a real 60 s outage; it is bounded by
   ``WebhookOptions.probe_max_delay``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from watui.clock import RealClock  # noqa: E402
from watui.config import Settings  # noqa: E402
from watui.engines.simulated import SimulatedEngine  # noqa: E402
from watui.manager import SessionManager  # noqa: E402
from watui.models import Caller, SessionCreate  # noqa: E402
from watui.webhooks import WebhookDispatcher  # noqa: E402

# ==================================================================== the receiver process


async def _receiver_main(port: int) -> None:
    """Answer 204 to every POST; ``GET /count`` answers how many POSTs came."""
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /count"):
                    text = str(count).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
                else:
                    count += 1
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, reuse_address=True, backlog=1024)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


class ReceiverProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(self.port)], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"listening":
            raise RuntimeError("the receiver did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    async def count(self) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
        return int(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ==================================================================== helpers


async def wait_until(check: Callable[[], Awaitable[bool] | bool], interval: float = 0.01) -> None:
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)


async def link_sessions(manager: SessionManager, n: int, port: int) -> list[str]:
    admin = manager.service(Caller.local_admin())
    engine = manager.engine
    assert isinstance(engine, SimulatedEngine)
    ids: list[str] = []
    for n_ in range(n):
        spec = SessionCreate.model_validate(
            {"name": f"bench-{n_}", "settings": {"webhook_url": f"http://127.0.0.1:{port}/hook/{n_}"}}
        )
        ids.append((await admin.create_session(spec)).id)
    await wait_until(lambda: all(engine.phone(i).current_code is not None for i in ids))
    for i in ids:
        engine.phone(i).scan()
    await wait_until(lambda: all(engine.phone(i).state == "connected" for i in ids))
    await manager.drain_all()
    return ids


async def emit_burst(manager: SessionManager, ids: list[str], total: int) -> None:
    """``total`` incoming messages spread over the sessions, as fast as the engine takes them."""
    engine = manager.engine
    assert isinstance(engine, SimulatedEngine)
    per, extra = divmod(total, len(ids))
    for k, sid in enumerate(ids):
        phone = engine.phone(sid)
        for j in range(per + (1 if k < extra else 0)):
            phone.receive("14155550100", f"burst {j}")
    await asyncio.gather(*(manager.drain(i) for i in ids))


async def emit_at_rate(manager: SessionManager, ids: list[str], rate: float, stop: asyncio.Event) -> int:
    """About ``rate`` events/s in all, round robin over the sessions, until ``stop``."""
    engine = manager.engine
    assert isinstance(engine, SimulatedEngine)
    sent, k = 0, 0
    start = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        while sent < due:
            engine.phone(ids[k % len(ids)]).receive("14155550100", f"steady {sent}")
            sent += 1
            k += 1
        await asyncio.sleep(0.01)
    return sent


async def idle(dispatcher: WebhookDispatcher) -> bool:
    return dispatcher.in_flight == 0 and await dispatcher.pending_count() == 0


async def count_rows(manager: SessionManager, sql: str, *params: object) -> int:
    rows = await manager.store.fetchall(sql, params)
    return int(rows[0][0])


# ==================================================================== the benchmark


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    receiver = ReceiverProcess(port)
    receiver.start()
    with tempfile.TemporaryDirectory(prefix="watui-bench-") as tmp:
        settings = Settings.model_validate({
            "data_dir": Path(tmp), "engine": "simulated", "sqlite_synchronous": args.synchronous,
            "max_active_sessions_per_owner": 10_000,
            # The receiver is on loopback: allowed as an operator would allow their own network
            # (by network, so every connection still goes through the guard's resolve-and-check).
            "webhook_allowed_hosts": ["127.0.0.0/8"],
        })
        engine = SimulatedEngine(clock=RealClock(), connect_latency=0.0, link_latency=0.0, seed="bench")
        manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
        dispatcher = manager.webhooks
        assert dispatcher is not None
        opts = dispatcher.options
        if args.in_flight:
            opts.max_in_flight = args.in_flight
            opts.per_receiver = max(1, args.in_flight // 2)
        try:
            ids = await link_sessions(manager, args.sessions, port)
            await wait_until(lambda: idle(dispatcher))
            print(f"watui webhooks benchmark: {args.sessions} linked sessions, one URL each, "
                  f"receiver in a separate process, sqlite synchronous={args.synchronous}, "
                  f"{os.cpu_count()} CPUs")
            print(f"dispatcher: max_in_flight={opts.max_in_flight} per_session={opts.per_session} "
                  f"per_receiver={opts.per_receiver} base_delay={opts.base_delay}s "
                  f"probe_max_delay={opts.probe_max_delay}s")

            # ---------------------------------------------------------- 1. throughput
            base = await receiver.count()
            events_before = await count_rows(manager, "SELECT COUNT(*) FROM events")
            stop = asyncio.Event()

            async def flood() -> int:
                sent = 0
                while not stop.is_set():
                    await emit_burst(manager, ids, len(ids) * 5)
                    sent += len(ids) * 5
                return sent

            task = asyncio.create_task(flood())
            t0 = time.perf_counter()
            await asyncio.sleep(args.seconds)
            stop.set()
            emitted = await task
            window = time.perf_counter() - t0
            got_in_window = await receiver.count() - base
            await wait_until(lambda: idle(dispatcher))
            tail = time.perf_counter() - t0 - window
            total = await receiver.count() - base
            events = await count_rows(manager, "SELECT COUNT(*) FROM events") - events_before
            print("\n1. throughput (receiver up, sessions emitting as fast as the engine takes messages)")
            print(f"   events emitted:      {events} in {window:.1f} s = {events / window:,.0f} events/s "
                  f"({emitted} messages)")
            print(f"   deliveries received: {got_in_window} in the same window = "
                  f"{got_in_window / window:,.0f} deliveries/s")
            print(f"   all {total} delivered {tail:.2f} s after the emitters stopped "
                  f"(end to end {total / (window + tail):,.0f} deliveries/s)")

            # ---------------------------------------------------------- 1b. ceiling
            # The same, with the engine's share of the CPU taken out: queue a backlog with the
            # dispatcher paused (max_in_flight 0), then time the dispatcher alone draining it.
            in_flight = opts.max_in_flight
            opts.max_in_flight = 0
            size = args.sessions * 100
            await emit_burst(manager, ids, size)
            base = await receiver.count()
            opts.max_in_flight = in_flight
            t0 = time.perf_counter()
            dispatcher.wake()
            await wait_until(lambda: idle(dispatcher))
            ceiling = time.perf_counter() - t0
            got = await receiver.count() - base
            print(f"   dispatcher alone:    {got:,} queued deliveries sent in {ceiling:.2f} s = "
                  f"{got / ceiling:,.0f} deliveries/s (no events being emitted meanwhile)")

            # ---------------------------------------------------------- 2. outage
            rate = args.rate
            backlog_target = int(rate * 60)
            attempts_before = await count_rows(manager, "SELECT COUNT(*) FROM webhook_attempts")
            receiver.kill()
            stop = asyncio.Event()
            steady = asyncio.create_task(emit_at_rate(manager, ids, rate, stop))
            outage_start = time.perf_counter()
            if args.outage < 60:
                await emit_burst(manager, ids, int(rate * (60 - args.outage)))
            await asyncio.sleep(max(0.0, args.outage - (time.perf_counter() - outage_start)))
            outage = time.perf_counter() - outage_start
            receiver.start()
            up = time.perf_counter()
            last_id = await count_rows(manager, "SELECT COALESCE(MAX(id), 0) FROM webhook_deliveries")
            backlog = await count_rows(
                manager, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND id <= ?", last_id)
            wasted = await count_rows(manager, "SELECT COUNT(*) FROM webhook_attempts") - attempts_before
            first_success: float | None = None
            while True:
                left = await count_rows(
                    manager, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND id <= ?",
                    last_id)
                if first_success is None and left < backlog:
                    first_success = time.perf_counter() - up
                if left == 0:
                    break
                await asyncio.sleep(0.01)
            drain = time.perf_counter() - up
            stop.set()
            steady_sent = await steady
            lost = await count_rows(
                manager, "SELECT COUNT(*) FROM webhook_deliveries WHERE status != 'delivered' AND id <= ?",
                last_id)
            print(f"\n2. outage: receiver process killed for {outage:.1f} s (connection refused) while "
                  f"the sessions emit {rate:g} events/s")
            if args.outage < 60:
                print(f"   simulated: a {args.outage:g} s real outage plus a burst, so the backlog has the "
                      f"size a 60 s outage at {rate:g} events/s produces ({backlog_target:,} events)")
            else:
                print("   a real 60 s outage")
            print(f"   backlog when the receiver came back: {backlog:,} deliveries "
                  f"({wasted} attempts were spent on the dead receiver during the outage)")
            print(f"   first delivery after recovery:       {first_success or 0:.2f} s (probe wait)")
            print(f"   backlog drained in:                  {drain:.2f} s after the receiver came back "
                  f"({backlog / max(drain - (first_success or 0), 1e-9):,.0f} deliveries/s once flowing; "
                  f"the sessions kept emitting: {steady_sent:,} events since the outage began)")
            print(f"   undelivered from the backlog:        {lost}")
        finally:
            await manager.aclose()
            receiver.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in all during the outage run")
    parser.add_argument("--outage", type=float, default=60.0,
                        help="real outage in seconds; under 60 the backlog is topped up to 60 s worth")
    parser.add_argument("--in-flight", type=int, default=0, help="override max_in_flight")
    parser.add_argument("--synchronous", choices=["OFF", "NORMAL", "FULL"], default="FULL")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        asyncio.run(_receiver_main(args.receiver))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
