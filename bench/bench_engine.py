"""Engine benchmarks (issue 2): figures printed, not timed tests.

    .venv/bin/python -m bench.bench_engine [--sessions 10000] [--quick]

1. Lifecycle: N sessions on the simulated engine with the real clock, through the manager's
   public service: create (start=true) -> QR shown and rotated -> scanned -> connected ->
   one message in and one out each -> 20 % dropped by the network and auto-reconnected ->
   10 s of steady traffic (1,000 incoming messages/s, 50 drops/s) -> 20 % stopped -> shutdown. It runs twice:
     a. plain, with a probe measuring event-loop lag, RSS and timings;
     b. under ``tracemalloc``, up to "all connected", for Python-side memory per live session
        (tracemalloc slows Python down several times, so lag is never measured in that run).
   A "console" subscriber reads every event off the bus throughout, as the Textual app does.
2. Store: events/s through ``Store.append`` from many concurrent writers (group commit), with
   synchronous=FULL (the default) and NORMAL, beside raw ``sqlite3`` at the same batch size
   (bench/bench_store.py, which also runs alone: ``python -m bench store``).
3. Bus: publish -> subscriber latency at a steady 2,000 events/s.

Timing of the simulated engine: connect 0.3 s and link 1.0 s (what ``build_engine`` uses for the
demo); QR codes live 10 s then 5 s instead of WhatsApp's 60 s / 20 s, so the codes of the
first sessions rotate (under load) while the rest are still being created. That is 4-6x the
real QR event rate, so the lag figures are on the pessimistic side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._util import (
    CpuShare,
    Figure,
    GcPauses,
    LagProbe,
    fs_type,
    load_average,
    mib,
    percentile,
    print_table,
    rss_bytes,
    run_pool,
    wait_until,
)
from bench.bench_store import run_store_benchmarks, sample_events, store_figures
from watui.bus import BusSubscription, EventBus
from watui.clock import RealClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType, Status
from watui.manager import SessionManager
from watui.manager.tuning import tune_gc
from watui.models import Caller, NewEvent, Session, SessionCreate, SimulateRequest
from watui.stores.sqlite import Store

KB = 1024.0

# Goals from issue 2.
GOAL_MEMORY_KB = 50.0
GOAL_LAG_P99_MS = 20.0

# Lifecycle shape.
QR_FIRST_TTL = 10.0
QR_NEXT_TTL = 5.0
CONNECT_LATENCY = 0.3
LINK_LATENCY = 1.0
DRIVER_CONCURRENCY = 200  # requests in flight from the benchmark driver (like API clients)
DROP_SHARE = 0.2
STOP_SHARE = 0.2
STEADY = "steady traffic"
STEADY_MESSAGES = 1_000  # incoming messages per second over all sessions
STEADY_DROPS = 50  # dropped connections per second (each reconnects with back-off)
# --trace-frames 12 names the watui line behind each pydantic/asyncio allocation, but slows the
# traced run ~7x; at N=10,000 that pushes creation past the QR window.
TRACE_FRAMES = 1


# ===================================================================== lifecycle


class StatusTracker:
    """Counts sessions per status from the manager's change callback (no O(N) polling)."""

    def __init__(self, manager: SessionManager) -> None:
        self.status: dict[str, Status] = {}
        self.counts: Counter[Status] = Counter()
        self.rotated: set[str] = set()
        manager.on_session_change.append(self._changed)

    def _changed(self, session: Session) -> None:
        old = self.status.get(session.id)
        if old is not session.status:
            if old is not None:
                self.counts[old] -= 1
            self.counts[session.status] += 1
            self.status[session.id] = session.status
        if session.qr_generation >= 2:
            self.rotated.add(session.id)


class Console:
    """Reads every event off the bus, as the Textual app does."""

    def __init__(self, sub: BusSubscription) -> None:
        self.sub = sub
        self.received = 0
        self.types: Counter[EventType] = Counter()
        self.out_of_order = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name="bench-console")

    async def _run(self) -> None:
        last = 0
        async for event in self.sub:
            if event.id <= last:
                self.out_of_order += 1
            last = event.id
            self.received += 1
            self.types[event.type] += 1


@dataclass
class LifecycleResult:
    n: int
    traced: bool
    phases: list[tuple[str, float]] = field(default_factory=list)
    phase_cpu: dict[str, float] = field(default_factory=dict)
    lag: LagProbe | None = None
    rss_base: int = 0
    rss: dict[str, int] = field(default_factory=dict)
    py: dict[str, int] = field(default_factory=dict)
    top_sites: list[tuple[str, int]] = field(default_factory=list)
    events: int = 0
    commits: int = 0
    console_received: int = 0
    console_resyncs: int = 0
    console_out_of_order: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    final: Counter[Status] = field(default_factory=Counter)
    messages: int = 0
    rotated: int = 0
    qr_events: int = 0
    active_seconds: float = 0.0
    gc_full: list[float] = field(default_factory=list)
    gc_objects: dict[str, int] = field(default_factory=dict)
    cpu_share: float = 0.0


async def run_lifecycle(
    n: int,
    root: Path,
    *,
    traced: bool,
    trace_frames: int = TRACE_FRAMES,
    steady_seconds: float = 10.0,
    overrides: dict[str, Any] | None = None,
) -> LifecycleResult:
    res = LifecycleResult(n=n, traced=traced)
    # Under tracemalloc everything runs several times slower; WhatsApp's own QR timing keeps
    # the rotation load from starving creation (memory per session does not depend on it).
    first_ttl, next_ttl = (60.0, 20.0) if traced else (QR_FIRST_TTL, QR_NEXT_TTL)
    settings = Settings(
        data_dir=root,
        engine="simulated",
        qr_first_ttl=first_ttl,
        qr_next_ttl=next_ttl,
        pairing_timeout=300,
        reconnect_base_delay=0.5,
        reconnect_max_delay=5,
        **(overrides or {}),
    )
    clock = RealClock()
    engine = SimulatedEngine(
        clock=clock, seed="bench", connect_latency=CONNECT_LATENCY, link_latency=LINK_LATENCY,
        qr_first_ttl=settings.qr_first_ttl, qr_next_ttl=settings.qr_next_ttl,
        codes_per_attempt=settings.qr_codes_per_attempt,
    )
    manager = await SessionManager.open(settings, engine=engine, clock=clock)
    try:
        service = manager.service(Caller.local_admin())
        tracker = StatusTracker(manager)
        console = Console(manager.bus.subscribe())
        ids: list[str] = []
        timeout = 60 + n / 50  # generous: only a hang should ever hit it

        async def until(predicate: Callable[[], bool]) -> None:
            try:
                await wait_until(predicate, timeout=timeout)
            except TimeoutError:
                counts = ", ".join(f"{s.value} {c}" for s, c in tracker.counts.items() if c)
                raise TimeoutError(f"stuck in {res.phases[-1][0]!r}: {counts}; errors {dict(res.errors)}") from None

        def note(errors: Sequence[BaseException], what: str) -> None:
            for exc in errors:
                res.errors[f"{what}: {type(exc).__name__}"] += 1

        # The collector settings `watui serve` and the console use (watui/manager/tuning.py); the
        # freeze there happens after the restore, so here it finds nothing of ours yet.
        tune_gc()
        # Baselines: after the manager, the store and the console subscriber exist.
        gc.collect()
        res.rss_base = rss_bytes()
        py_base = 0
        if traced:
            tracemalloc.start(trace_frames)
            py_base = tracemalloc.get_traced_memory()[0]
        probe: LagProbe | None = None
        if not traced:
            probe = res.lag = LagProbe(0.010)
            probe.start()
        events0, commits0 = manager.store.last_committed_id, manager.store.commits
        gc_objects0 = len(gc.get_objects()) if traced else 0
        gc_pauses = GcPauses()
        gc_pauses.start()
        cpu = CpuShare()
        t_start = time.perf_counter()
        t_phase = t_start
        cpu_phase = time.process_time()

        def phase(name: str) -> None:
            nonlocal t_phase, cpu_phase
            now, cpu_now = time.perf_counter(), time.process_time()
            if res.phases:
                res.phases[-1] = (res.phases[-1][0], now - t_phase)
                res.phase_cpu[res.phases[-1][0]] = cpu_now - cpu_phase
            res.phases.append((name, 0.0))
            t_phase, cpu_phase = now, cpu_now
            counts = ", ".join(f"{s.value} {c}" for s, c in tracker.counts.items() if c)
            print(f"      {now - t_start:6.1f} s  {name:<24} {counts}", flush=True)
            if probe is not None:
                probe.mark(name)

        def measure(label: str) -> None:
            res.rss[label] = rss_bytes()
            if traced:
                gc.collect()
                res.py[label] = tracemalloc.get_traced_memory()[0] - py_base
                res.gc_objects[label] = len(gc.get_objects()) - gc_objects0

        # 1. Create N sessions with start=true; each connects and shows its first QR code, and
        #    the codes of the first ones rotate while the rest are still being created.
        phase("create + first QR")

        async def create(i: int) -> None:
            session = await service.create_session(SessionCreate(name=f"bench-{i:05d}", start=True))
            ids.append(session.id)

        note(await run_pool(range(n), create, concurrency=DRIVER_CONCURRENCY), "create")
        await until(lambda: tracker.counts[Status.QR_READY] >= len(ids))
        await manager.drain_all()
        measure("qr_ready")
        res.rotated = len(tracker.rotated)

        # 2. Every phone scans; pair success, then connected a moment later.
        phase("scan + connect")

        async def scan(session_id: str) -> None:
            # Between two rounds of codes there is briefly nothing to scan: try again.
            for _ in range(20):
                try:
                    await service.simulate(session_id, SimulateRequest(action="scan"))
                    return
                except Exception:
                    await asyncio.sleep(0.25)
            await service.simulate(session_id, SimulateRequest(action="scan"))

        note(await run_pool(ids, scan, concurrency=DRIVER_CONCURRENCY), "scan")
        await until(lambda: tracker.counts[Status.CONNECTED] >= len(ids))
        await manager.drain_all()
        measure("connected")
        if traced:
            # Memory is measured; the rest of the lifecycle under tracemalloc only costs time.
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            res.top_sites = _top_sites(snapshot)
            del snapshot
            gc_pauses.stop()
            await manager.aclose()
            phase("end")
            res.phases.pop()
            console.task.cancel()
            return res

        # 3. One message in and one out per session.
        phase("messages")

        async def exchange(session_id: str) -> None:
            await service.simulate(session_id, SimulateRequest(action="message", text="hello from the phone"))
            await service.send_message(session_id, "14155550123", "hello back")
            res.messages += 2

        note(await run_pool(ids, exchange, concurrency=DRIVER_CONCURRENCY), "message")
        await manager.drain_all()

        # 4. The network drops some connections; they reconnect by themselves with back-off.
        phase("drop + auto-reconnect")
        dropped = ids[: int(len(ids) * DROP_SHARE)]

        async def drop(session_id: str) -> None:
            await service.simulate(session_id, SimulateRequest(action="disconnect"))

        note(await run_pool(dropped, drop, concurrency=DRIVER_CONCURRENCY), "drop")
        await until(lambda: tracker.counts[Status.CONNECTED] >= len(ids))
        await manager.drain_all()

        # 5. Steady state: every session live, with traffic at a fixed rate instead of as fast
        #    as the driver can push. The phones send messages and the network drops a few
        #    connections (they come back by themselves).
        phase(STEADY)
        await steady_traffic(engine, ids, seconds=steady_seconds)
        await until(lambda: tracker.counts[Status.CONNECTED] >= len(ids))
        await manager.drain_all()

        # 6. The admin stops some sessions.
        phase("stop")
        stopped = ids[len(ids) - int(len(ids) * STOP_SHARE) :]

        async def stop(session_id: str) -> None:
            await service.stop(session_id)

        note(await run_pool(stopped, stop, concurrency=DRIVER_CONCURRENCY), "stop")
        await manager.drain_all()
        measure("after stop")
        res.final = Counter({s: c for s, c in tracker.counts.items() if c})

        # The console must have seen every event, once, in order.
        await wait_until(
            lambda: console.sub.last_id >= manager.store.last_committed_id, timeout=30
        )
        res.console_received = console.received
        res.console_resyncs = console.sub.resyncs
        res.console_out_of_order = console.out_of_order
        res.qr_events = console.types[EventType.QR]
        res.events = manager.store.last_committed_id - events0
        res.commits = manager.store.commits - commits0
        res.active_seconds = time.perf_counter() - t_start
        res.cpu_share = cpu.ratio()
        gc_pauses.stop()
        res.gc_full = gc_pauses.full

        # 7. Shutdown parks every running session.
        phase("shutdown")
        await manager.aclose()
        phase("end")
        res.phases.pop()
        if probe is not None:
            await probe.stop()
        console.task.cancel()
        return res
    except BaseException:
        # Close the store even on failure: its aiosqlite threads would keep the process alive.
        with contextlib.suppress(NameError):
            gc_pauses.stop()
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        with contextlib.suppress(Exception):
            await manager.aclose()
        raise


async def steady_traffic(engine: SimulatedEngine, ids: Sequence[str], *, seconds: float) -> None:
    """Incoming messages at STEADY_MESSAGES/s and network drops at STEADY_DROPS/s, spread
    over the sessions, reported by the engine as a real one would (no waiting on them)."""
    start = time.perf_counter()
    sent = dropped = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(int(elapsed * STEADY_MESSAGES) - sent):
            phone = engine.sessions.get(ids[(sent * 7919) % len(ids)])
            sent += 1
            if phone is not None and phone.state == "connected":
                phone.receive("14155550123", "steady hello")
        for _ in range(int(elapsed * STEADY_DROPS) - dropped):
            phone = engine.sessions.get(ids[(dropped * 104729 + 1) % len(ids)])
            dropped += 1
            if phone is not None and phone.state == "connected":
                phone.drop("connection_lost")
        await asyncio.sleep(0.005)


def _top_sites(snapshot: tracemalloc.Snapshot, limit: int = 10) -> list[tuple[str, int]]:
    """Live bytes grouped by the innermost watui frame that led to the allocation, with the
    allocating line beside it when that is elsewhere (pydantic, asyncio, ...)."""
    sizes: Counter[str] = Counter()
    for trace in snapshot.traces:
        frames = list(reversed(trace.traceback))  # most recent call first
        if not frames:
            continue
        top = frames[0]
        ours = next((f for f in frames if "/watui/" in f.filename), None)
        if ours is None:
            key = f"{_short(top.filename)}:{top.lineno}"
        else:
            key = f"watui/{ours.filename.split('/watui/')[-1]}:{ours.lineno}"
            if ours is not top:
                key += f" -> {_short(top.filename)}:{top.lineno}"
        sizes[key] += trace.size
    return sizes.most_common(limit)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/", "python3.12/", "python3.13/"):
        if marker in filename:
            return filename.split(marker)[-1]
    return filename


# ===================================================================== bus


@dataclass
class BusResult:
    label: str
    published: int
    seconds: float
    latencies: list[float]
    subscribers: int
    delivered_ok: bool
    resyncs: int
    commits: int


async def bench_bus(
    path: Path, *, rate: float, seconds: float, subscribers: int, synchronous: str
) -> BusResult:
    store = await Store.open(path, synchronous=synchronous)
    bus = EventBus(store)
    total = int(rate * seconds)
    sent_at = [0.0] * total
    latencies: list[float] = []
    received: list[list[int]] = [[] for _ in range(subscribers)]
    subs = [bus.subscribe() for _ in range(subscribers)]
    clock = time.perf_counter

    async def consume(k: int, sub: BusSubscription) -> None:
        got = received[k]
        async for event in sub:
            latencies.append(clock() - sent_at[event.payload["seq"]])
            got.append(event.payload["seq"])
            if len(got) == total:
                return

    consumers = [asyncio.create_task(consume(k, s)) for k, s in enumerate(subs)]
    in_flight: set[asyncio.Task[Any]] = set()

    async def publish(seq: int) -> None:
        event = NewEvent(type=EventType.MESSAGE, session_id=f"ses_{seq % 100:016x}", owner="local",
                         timestamp=datetime.now(UTC), payload={"seq": seq, "direction": "in", "text": "hi"})
        sent_at[seq] = clock()
        await bus.publish([event])

    commits0 = store.commits
    start = clock()
    sent = 0
    while sent < total:
        due = min(total, int((clock() - start) * rate) + 1)
        while sent < due:  # each event is its own publish call, as each session's would be
            task = asyncio.create_task(publish(sent))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        await asyncio.sleep(0.001)
    elapsed = clock() - start
    await asyncio.wait_for(asyncio.gather(*consumers), timeout=30)
    ok = all(got == list(range(total)) for got in received)
    resyncs = sum(s.resyncs for s in subs)
    commits = store.commits - commits0
    await bus.close()
    await store.close()
    return BusResult(f"synchronous={synchronous}", total, elapsed, latencies, subscribers, ok, resyncs, commits)


# ===================================================================== report


def lifecycle_figures(plain: LifecycleResult, traced: LifecycleResult | None) -> list[Figure]:
    n = plain.n
    figs: list[Figure] = []
    if traced is not None:
        for label, title in (("qr_ready", "QR shown"), ("connected", "connected")):
            figs.append(Figure(f"Python memory / session ({title})", traced.py[label] / traced.n / KB, "KB",
                               GOAL_MEMORY_KB, "<=", "tracemalloc delta / N, sessions live"))
    for label, title in (("qr_ready", "QR shown"), ("connected", "connected")):
        figs.append(Figure(f"RSS / session ({title})", (plain.rss[label] - plain.rss_base) / n / KB, "KB",
                           note="RSS delta / N (includes SQLite and allocator slack)"))
    assert plain.lag is not None
    lag_ms = [s * 1000 for s in plain.lag.samples]
    steady_ms = [s * 1000 for s in dict(plain.lag.phases()).get(STEADY, [])]
    figs += [
        Figure("event-loop lag p50", percentile(lag_ms, 50), "ms", digits=2,
               note=f"{len(lag_ms):,} samples of a 10 ms sleep"),
        Figure("event-loop lag p99, whole lifecycle", percentile(lag_ms, 99), "ms", GOAL_LAG_P99_MS, "<=",
               digits=2, note="driver at full speed: create, scan, ... 200 requests in flight"),
        Figure("event-loop lag max", max(lag_ms, default=float("nan")), "ms", digits=2),
        Figure("event-loop lag p99, steady traffic", percentile(steady_ms, 99), "ms", GOAL_LAG_P99_MS, "<=",
               digits=2, note=f"all {n:,} live, {STEADY_MESSAGES:,} msgs/s + {STEADY_DROPS} drops/s; "
                              f"p50 {percentile(steady_ms, 50):.2f}, max {max(steady_ms, default=float('nan')):.2f} ms"),
        Figure("full GC pause max", max(plain.gc_full, default=0.0) * 1000, "ms", digits=1,
               note=f"{len(plain.gc_full)} gen-2 collections, {sum(plain.gc_full):.2f} s in all; they stop the loop"),
        Figure("lifecycle events written", plain.events, "", digits=0,
               note=f"{plain.commits:,} commits, {plain.events / max(plain.commits, 1):.1f} events/commit"),
        Figure("lifecycle event rate", plain.events / plain.active_seconds, "events/s", digits=0,
               note=f"over {plain.active_seconds:.1f} s create..stop"),
        Figure("console subscriber: events missed", plain.events - plain.console_received, "", 0, "<=", digits=0,
               note=f"{plain.console_received:,} received, {plain.console_resyncs} resyncs, "
                    f"{plain.console_out_of_order} out of order"),
    ]
    return figs


def print_lifecycle_details(plain: LifecycleResult, traced: LifecycleResult | None) -> None:
    n = plain.n
    print()
    print("Lifecycle phases (plain run): wall time and event-loop lag")
    print(f"  {'phase':<24}{'seconds':>9}{'CPU s':>8}{'lag p50 ms':>12}{'lag p99 ms':>12}{'lag max ms':>12}"
          f"{'samples':>9}")
    assert plain.lag is not None
    lag = dict(plain.lag.phases())
    for name, secs in plain.phases:
        samples = [s * 1000 for s in lag.get(name, [])]
        print(f"  {name:<24}{secs:>9.2f}{plain.phase_cpu.get(name, 0.0):>8.2f}{percentile(samples, 50):>12.2f}{percentile(samples, 99):>12.2f}"
              f"{max(samples, default=float('nan')):>12.2f}{len(samples):>9}")
    final = ", ".join(f"{s.value} {c:,}" for s, c in sorted(plain.final.items()))
    print(f"  final statuses: {final}; messages {plain.messages:,}; QR codes shown {plain.qr_events:,}, "
          f"{plain.rotated:,} sessions saw a rotated code before the scan")
    rss = ", ".join(f"{k} {mib(v - plain.rss_base):,.1f} MiB" for k, v in plain.rss.items())
    print(f"  RSS: base {mib(plain.rss_base):,.1f} MiB; deltas {rss}")
    print(f"  process CPU / wall over create..stop: {plain.cpu_share:.2f}. Phases wait on engine latencies, "
          "but 'create' is busy all along except its last ~0.3 s: CPU s well below its seconds there "
          "means other processes had the CPU")
    errors = plain.errors + (traced.errors if traced else Counter())
    if errors:
        print("  driver errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    if traced is not None:
        py = ", ".join(f"{k} {mib(v):,.1f} MiB" for k, v in traced.py.items())
        print(f"  tracemalloc deltas: {py}  (traced run took {sum(s for _, s in traced.phases):.1f} s)")
        objs = ", ".join(f"{k} {v / traced.n:,.0f}" for k, v in traced.gc_objects.items())
        print(f"  GC-tracked objects per session (what a full collection walks): {objs}")
        print(f"  top Python allocation sites, all sessions connected (bytes per session of {n:,}):")
        for site, size in traced.top_sites[:8]:
            print(f"    {size / traced.n:>9,.0f}  {site}")


def bus_figures(results: Sequence[BusResult]) -> list[Figure]:
    figs: list[Figure] = []
    for r in results:
        ms = [x * 1000 for x in r.latencies]
        rate = r.published / r.seconds
        note = (f"{r.published:,} events at {rate:,.0f}/s to {r.subscribers} subscribers, "
                f"{r.commits:,} commits, {r.resyncs} resyncs, "
                f"{'all delivered in order' if r.delivered_ok else 'LOSS OR DISORDER'}")
        figs += [
            Figure(f"bus latency p50, {r.label}", percentile(ms, 50), "ms", digits=2, note=note),
            Figure(f"bus latency p99, {r.label}", percentile(ms, 99), "ms", digits=2),
            Figure(f"bus latency max, {r.label}", max(ms, default=float("nan")), "ms", digits=2),
        ]
    return figs


# ===================================================================== main


async def _run(args: argparse.Namespace) -> None:
    n: int = args.sessions
    quick: bool = args.quick
    store_events = 20_000 if quick else 200_000
    writers = 1_000
    bus_seconds = 1.0 if quick else 5.0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="watui-bench-") as tmp:
        root = Path(tmp)
        print(f"watui engine benchmarks: N={n:,} sessions, Python {sys.version.split()[0]}, "
              f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs (load avg {load_average()}), "
              f"data in {root} ({fs_type(root)})")
        print("simulated engine on the real clock: connect 0.3 s, link 1.0 s, "
              f"QR codes {QR_FIRST_TTL:g} s then {QR_NEXT_TTL:g} s (WhatsApp: 60/20 s); "
              f"driver concurrency {DRIVER_CONCURRENCY}")

        def progress(what: str) -> None:
            print(f"  [{time.perf_counter() - started:6.1f} s] {what}", flush=True)

        progress("lifecycle, plain run (lag, RSS)")
        plain = await run_lifecycle(n, root / "life-plain", traced=False, steady_seconds=3.0 if quick else 10.0)
        gc.collect()
        progress(f"lifecycle, tracemalloc run (Python memory; {args.trace_frames} frame(s), QR codes 60 s then 20 s)")
        traced = await run_lifecycle(n, root / "life-traced", traced=True, trace_frames=args.trace_frames)
        gc.collect()

        progress(f"store: {store_events:,} events from {writers:,} writers")
        events = sample_events(store_events)
        store_results = await run_store_benchmarks(root, events, writers=writers)
        del events
        gc.collect()

        progress(f"bus: 2,000 events/s for {bus_seconds:g} s")
        bus_results = [
            await bench_bus(root / f"bus-{sync}.db", rate=2000, seconds=bus_seconds, subscribers=4,
                            synchronous=sync)
            for sync in ("FULL", "NORMAL")
        ]
        progress(f"done (load avg {load_average()})")

    print_table(f"Lifecycle: {n:,} simulated sessions in one process", lifecycle_figures(plain, traced))
    print_lifecycle_details(plain, traced)
    print_table("Store: event log writes (group commit) vs raw sqlite3", store_figures(store_results))
    print_table("Bus: publish -> subscriber latency (publish = commit, then fan-out)", bus_figures(bus_results))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_engine", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=None, help="sessions in the lifecycle (default 10000)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (300 sessions, fewer events)")
    parser.add_argument("--trace-frames", type=int, default=TRACE_FRAMES,
                        help="tracemalloc frames (more names the watui line behind each allocation, but is slower)")
    args = parser.parse_args(argv)
    if args.sessions is None:
        args.sessions = 300 if args.quick else 10_000
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
