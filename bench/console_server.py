"""The server of ``bench_console``'s attach variant: ``watui serve`` in its own process.

Simulated engine, slow to connect (an hour), so that a burst of ``start`` calls is one
``status`` event per session, as in the inline variant whose clock stands still. On SIGUSR1
it starts the first ``--burst`` sessions (by id) at once, as the inline variant's burst does
in-process, and prints ``burst done in N ms``: the console sees a server-side burst, as it
would when phones connect or an API client acts.

    python -m bench.console_server --data-dir DIR --port PORT [--queue N] [--burst N]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.manager import SessionManager
from watui.models import Caller
from watui.server.runner import serve


async def run(args: argparse.Namespace) -> None:
    settings = Settings(data_dir=args.data_dir, engine="simulated", port=args.port, host="127.0.0.1",
                        sqlite_synchronous="OFF", subscriber_queue_size=args.queue)
    engine = SimulatedEngine(seed=1, connect_latency=3600, persist_auth=False)
    manager = await SessionManager.open(settings, engine=engine)
    service = manager.service(Caller.local_admin())
    bursts: set[asyncio.Task[None]] = set()

    async def burst() -> None:
        ids = sorted(s.id for s in (await service.list_sessions(limit=None)).sessions)[: args.burst]
        start = time.perf_counter()
        await asyncio.gather(*(service.start(i) for i in ids))
        print(f"burst done in {(time.perf_counter() - start) * 1000:.1f} ms", flush=True)

    def on_signal() -> None:
        task = asyncio.get_running_loop().create_task(burst())
        bursts.add(task)
        task.add_done_callback(bursts.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_signal)
    await serve(settings, manager=manager, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queue", type=int, default=1024, help="subscriber queue size")
    parser.add_argument("--burst", type=int, default=1000, help="sessions started on SIGUSR1")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
