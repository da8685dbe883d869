"""Pacing (issue 21): how evenly paced sends are spaced, and what pacing costs, in real time.

    .venv/bin/python -m bench.bench_pacing [--sessions 50] [--rate 120] [--per-session 20]

A manager on the simulated engine (real clock, SQLite in a temporary directory) links
``--sessions`` sessions with ``settings.send_rate`` ``--rate`` messages a minute, then queues
``--per-session`` messages on each at once. Every ``message_status`` event that settles a
queued send is timed as it is read off the bus, and the gaps between one session's sends are
compared with the configured mean gap (``60 / rate``):

- the mean gap as a share of the configured one (1.00 is exact), and the spread of gaps
  (p1 and p99 as shares: the jitter is ±30 %, so 0.70-1.30 is the designed range);
- the gap as a share of the configured one at the moment the whole run was busiest;
- CPU per message, paced against the same messages sent directly (no pacing) in the same
  run: what the queue, the pending row and its settling add. Each run's CPU has the CPU of
  an idle spell as long as the run taken off it (the sessions' own timers, the store's
  checkpoints), as a paced run lasts longer.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench._util import Figure, percentile, print_table
from watui.clock import RealClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.models import Caller, SendMessage, SessionCreate, SessionSettings, SimulateRequest

TO = "14155550100"


async def linked(admin: ScopedService, name: str, rate: int | None) -> str:
    session = await admin.create_session(SessionCreate(name=name, settings=SessionSettings(send_rate=rate)))
    for _ in range(500):
        if (await admin.get_session(session.id)).status is Status.QR_READY:
            break
        await asyncio.sleep(0.01)
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    for _ in range(500):
        if (await admin.get_session(session.id)).status is Status.CONNECTED:
            return session.id
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{name} did not connect")


async def run(args: argparse.Namespace, data_dir: Path, *, paced: bool) -> tuple[dict[str, list[float]], float, int]:
    """Send every message (paced or not); per session the times its sends settled, the CPU
    seconds the process spent from the first send to the last, and how many went."""
    settings = Settings(data_dir=data_dir, engine="simulated", sqlite_synchronous="NORMAL")
    engine = SimulatedEngine(clock=RealClock(), seed=7)
    engine.receipt_delay = None  # only the sends themselves
    manager = await SessionManager.open(settings, engine=engine)
    admin = manager.service(Caller.local_admin())
    try:
        ids = [await linked(admin, f"s{n:03d}", args.rate if paced else None) for n in range(args.sessions)]
        live = admin.subscribe(types=frozenset({EventType.MESSAGE_STATUS, EventType.MESSAGE}))
        total = args.sessions * args.per_session
        settled: dict[str, list[float]] = defaultdict(list)
        cpu0, wall0 = time.process_time(), time.monotonic()

        async def send_all() -> None:
            for k in range(args.per_session):
                await asyncio.gather(*(admin.send(sid, SendMessage(to=TO, text=f"message {k}")) for sid in ids))

        sender = asyncio.create_task(send_all())
        seen = 0
        async for event in live:
            done = ((event.type is EventType.MESSAGE_STATUS and "id" in event.payload) or
                    (not paced and event.type is EventType.MESSAGE and event.payload.get("status") == "sent"))
            if done:
                settled[event.session_id].append(time.monotonic())
                seen += 1
                if seen == total:
                    break
        await sender
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        await live.aclose()
        # What the process spends doing nothing for as long (the sessions' timers, the store's
        # checkpoints), so the figure is what the sends themselves cost.
        idle0 = time.process_time()
        await asyncio.sleep(wall)
        cpu -= time.process_time() - idle0
        return settled, max(cpu, 0.0), seen
    finally:
        await manager.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=int, default=120, help="messages a minute per session")
    parser.add_argument("--per-session", type=int, default=20)
    args = parser.parse_args()
    mean_gap = 60 / args.rate
    print(f"... {args.sessions} sessions, {args.per_session} messages each, paced at {args.rate}/min "
          f"(a gap of {mean_gap:.2f} s on average); expect about {args.per_session * mean_gap:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        _direct, direct_cpu, direct_n = asyncio.run(run(args, Path(tmp) / "direct", paced=False))
        paced, paced_cpu, paced_n = asyncio.run(run(args, Path(tmp) / "paced", paced=True))
    shares = [(b - a) / mean_gap for times in paced.values() for a, b in itertools.pairwise(times)]
    expected_span = (args.per_session - 1) * mean_gap
    spans = [times[-1] - times[0] for times in paced.values() if len(times) > 1]
    figures = [
        Figure("messages settled (paced / sent)", paced_n, f"of {args.sessions * args.per_session}", digits=0),
        Figure("mean gap / configured", statistics.fmean(shares), "x", digits=3,
               note=f"configured {mean_gap:.2f} s"),
        Figure("gap p1 / configured", percentile(shares, 1), "x", digits=3, note="jitter floor 0.70"),
        Figure("gap p50 / configured", percentile(shares, 50), "x", digits=3),
        Figure("gap p99 / configured", percentile(shares, 99), "x", digits=3, note="jitter ceiling 1.30"),
        Figure("gap stdev / configured", statistics.pstdev(shares), "x", digits=3,
               note="uniform ±30 %: 0.173"),
        Figure("a session's whole run / expected", statistics.fmean(spans) / expected_span, "x", digits=3,
               note=f"expected {expected_span:.1f} s"),
        Figure("CPU per message, paced", paced_cpu / max(paced_n, 1) * 1e3, "ms", digits=3),
        Figure("CPU per message, direct (same run)", direct_cpu / max(direct_n, 1) * 1e3, "ms", digits=3),
        Figure("paced CPU / direct CPU", (paced_cpu / max(paced_n, 1)) / (direct_cpu / max(direct_n, 1)), "x",
               digits=2),
    ]
    print_table(f"bench_pacing: {args.sessions} sessions x {args.per_session} messages at {args.rate}/min",
                figures)


if __name__ == "__main__":
    main()
