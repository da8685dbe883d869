"""Small helpers shared by the benchmarks: percentiles, RSS, an event-loop lag probe, a
bounded worker pool, the figures table, and servers started as subprocesses. Figures are
printed, never asserted."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rss_bytes() -> int:
    """The process's current resident set size (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class LagProbe:
    """Sleeps ``interval`` seconds over and over and records how late it wakes up.

    Lateness is how long the loop was busy with other work past the due time, which is what a
    keystroke or an HTTP request waiting on the same loop would feel.
    """

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._marks: list[tuple[str, int]] = []

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-lag-probe")

    async def _run(self) -> None:
        interval = self.interval
        clock = time.perf_counter
        while True:
            due = clock() + interval
            await asyncio.sleep(interval)
            self.samples.append(max(0.0, clock() - due))

    def mark(self, phase: str) -> None:
        """Start a new phase: samples from here on belong to ``phase``."""
        self._marks.append((phase, len(self.samples)))

    def phases(self) -> list[tuple[str, list[float]]]:
        out: list[tuple[str, list[float]]] = []
        for i, (name, begin) in enumerate(self._marks):
            end = self._marks[i + 1][1] if i + 1 < len(self._marks) else len(self.samples)
            out.append((name, self.samples[begin:end]))
        return out

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


async def run_pool(
    items: Iterable[T], action: Callable[[T], Awaitable[object]], *, concurrency: int
) -> list[BaseException]:
    """Run ``action`` on every item with at most ``concurrency`` in flight; return the errors."""
    iterator = iter(items)
    errors: list[BaseException] = []

    async def worker() -> None:
        for item in iterator:  # the workers share one iterator, so each item runs once
            try:
                await action(item)
            except Exception as exc:
                errors.append(exc)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float, poll: float = 0.02
) -> float:
    """Poll ``predicate`` until it holds; return the seconds waited. Raises on timeout."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"condition not reached within {timeout:.0f} s")
        await asyncio.sleep(poll)
    return time.perf_counter() - start


@dataclass
class Figure:
    """One line of the results table. ``goal`` is compared with ``op``; None = reported only."""

    name: str
    value: float
    unit: str
    goal: float | None = None
    op: Literal["<=", ">="] = "<="
    note: str = ""
    digits: int = 1

    @property
    def verdict(self) -> str:
        if self.goal is None or math.isnan(self.value):
            return "-"
        ok = self.value <= self.goal if self.op == "<=" else self.value >= self.goal
        return "PASS" if ok else "MISS"

    def _fmt(self, value: float) -> str:
        if math.isnan(value):
            return "n/a"
        return f"{value:,.{self.digits}f}"

    def row(self) -> tuple[str, str, str, str, str]:
        goal = "" if self.goal is None else f"{self.op} {self._fmt(self.goal)} {self.unit}"
        return (self.name, f"{self._fmt(self.value)} {self.unit}", goal, self.verdict, self.note)


def print_table(title: str, figures: Sequence[Figure]) -> None:
    header = ("figure", "value", "goal", "", "note")
    rows = [header, *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    print(title)
    print("-" * len(title))
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3].ljust(widths[3])]
        print("  ".join(cells) + ("  " + r[4] if r[4] else ""))
        if i == 0:
            print("  ".join("-" * w for w in [*widths, 4]))
    sys.stdout.flush()


def mib(n: float) -> float:
    return n / (1024 * 1024)


def fs_type(path: Path) -> str:
    """The file system holding ``path`` (from ``/proc/mounts``), so a tmpfs run is visible."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best, kind = "", "unknown"
    for fields in mounts:
        point = fields[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


class GcPauses:
    """Records how long each garbage collection of the oldest generation takes. Those pauses
    grow with the number of live objects and stop the event loop as a whole."""

    def __init__(self) -> None:
        self.full: list[float] = []
        self.young = 0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif info["generation"] == 2:
            self.full.append(time.perf_counter() - self._start)
        else:
            self.young += 1

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> GcPauses:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CpuShare:
    """Process CPU time over wall time: below 1.0 on a single-threaded section means the
    machine was busy with other work (or the section waited on I/O)."""

    def __init__(self) -> None:
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def ratio(self) -> float:
        return (time.process_time() - self.cpu) / max(time.perf_counter() - self.wall, 1e-9)


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"{one:.2f}/{five:.2f}"
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------- servers

REPO = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"(?:watui|bare|stock) serving on (http://\S+)")
"""The line a server the benchmarks start prints once it listens (``watui serve`` and the
benchmarks' own bare servers)."""


@dataclass
class Spawned:
    """A server subprocess, listening at ``base_url``; ``output`` collects what it prints."""

    proc: subprocess.Popen[str]
    base_url: str
    output: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.base_url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn_server(argv: list[str], *, timeout: float = 60, cwd: Path = REPO,
                 env: dict[str, str] | None = None, **popen: Any) -> Spawned:
    """Start ``python argv…`` and wait for its :data:`SERVING` line (its output is kept on
    :attr:`Spawned.output`); ``popen`` goes to :class:`subprocess.Popen` (``preexec_fn``,
    ``start_new_session``)."""
    proc = subprocess.Popen(
        [sys.executable, *argv], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = SERVING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(output))
    return Spawned(proc, found[0], output)
