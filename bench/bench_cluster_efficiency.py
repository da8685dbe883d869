"""Cluster efficiency (issue 20): work per CPU-second with three nodes over work per CPU-second
with one, for the same workload in the same run; the goal is at least 0.8.

CPU-seconds are those of every process that does the work (:class:`bench._cluster.CpuMeter`):
the ``watui serve`` nodes, the PostgreSQL backends connected to the cluster's database and
the cluster's ``redis-server``; not the benchmark's own client. Two phases per cluster size,
measured with the same workload:

- **sessions linked**: create (with start) on the nodes round-robin, wait for ``qr_ready``,
  ``simulate scan``, wait for ``connected``, ``--eff-workers`` sessions in flight;
- **messages**: ``--eff-messages`` over those sessions, alternately a send (``POST …/messages``,
  later ``delivered`` and ``read`` receipts) and a received one (``simulate message``), each
  to the node that runs the session; the phase ends when every send is ``read``.

The work is measured at each load (calls in flight, :data:`LOADS` by default), both sizes
alike. The load changes the answer: at 16 in flight a single node is far from busy, and three
nodes share the same calls, so each does a third as much on every wake-up of its event loop and
pays the wake-ups, the heartbeats and the following of the others' commits in full (see
docs/cluster.md, "Measured: efficiency and routing"); at 144 in flight every node has work waiting.

With ``share`` (``--eff-share``), one node is also measured at each node's share of the
three-node load: a third of the work at a third of the calls in flight. Three nodes against
it is what the cluster itself costs (following, heartbeats, leases, more processes); it
against one node with all of the load is what the lighter load alone costs a node. The
breakdown splits the nodes' CPU into user and system time and counts their context switches.

Before the phases, each cluster idles a few seconds under the meter: what the nodes cost with
nothing to do (heartbeats, lease renewals, orphan scans), which a bigger cluster pays once per
node. After them, three nodes run the messages again all on n1's sessions, a diagnostic: what
n2 and n3 spend then is what following another node's commits costs (every node keeps every
session in memory and receives every commit through the fan-out). Each phase also reports the
events the nodes' fan-out delivered, by source (``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._cluster import (
    TO,
    CpuMeter,
    EventWatch,
    Usage,
    clients_for,
    cluster_roots,
    database_counters,
    feed_counts,
    link_sessions,
    start_cluster,
)
from bench._util import Figure, load_average
from watui.config import Settings

LOADS = (16, 144)
"""Calls in flight the efficiency is measured at by default: a light load and a busy one."""
WARM_UP = 3
"""Sessions per node linked (and messages sent) before measuring: pools open, code paths warm."""
IDLE = 4.0
"""Seconds each cluster idles under the meter."""
STATS_DELAY = 1.5
"""Seconds after a phase before reading PostgreSQL's transaction count (backends report it
when idle, at most once a second)."""
LINKED_IDLE = "idle, linked"
"""Each cluster idles again once its sessions are linked: PostgreSQL's transactions a second
then are what holding that many sessions costs (lease renewals, heartbeats, scans)."""
ONE_NODE = "messages, n1 only"
"""The diagnostic phase (three nodes only): the messages all on n1's sessions, so the CPU of n2
and n3 is what following another node's commits costs (not counted in the efficiency)."""


@dataclass
class Phase:
    work: int
    wall: float
    usage: dict[str, Usage]
    """By process kind (``watui <node>``, ``postgres``, ``redis``): CPU seconds in user space
    and in the kernel, and context switches."""
    load: str
    counts: dict[str, float] = field(default_factory=dict)
    """Events the nodes' fan-out delivered meanwhile, by source (summed over the nodes), and
    ``xacts``: the transactions PostgreSQL counted for the cluster's database."""

    @property
    def cpu(self) -> dict[str, float]:
        """CPU seconds (user and system) by process kind."""
        return {kind: used.cpu for kind, used in self.usage.items()}

    def nodes(self) -> Usage:
        return sum((v for k, v in self.usage.items() if k.startswith("watui")), Usage())

    def kind(self, prefix: str) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith(prefix))

    @property
    def total(self) -> float:
        return sum(self.cpu.values())


@dataclass
class Run:
    nodes: int
    workers: int
    """Calls in flight (the load)."""
    phases: dict[str, Phase] = field(default_factory=dict)
    share_of: int = 0
    """Not 0: one node at each node's share of the three-node load at ``share_of`` in flight (a
    third of the work and of the calls), a reference rather than a size compared."""


def timed(meter: CpuMeter, clients: dict[str, httpx.Client], work: int, action: Callable[[], object]) -> Phase:
    before = feed_counts(clients)
    xacts, updated = database_counters(meter.database)
    meter.start()
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    usage = meter.stop()
    after = feed_counts(clients)
    time.sleep(STATS_DELAY)
    now_xacts, now_updated = database_counters(meter.database)
    after["xacts"], after["rows updated"] = now_xacts - xacts, now_updated - updated
    return Phase(work, wall, usage, load_average(), {k: v - before.get(k, 0.0) for k, v in after.items()})


def measure(root: Path, nodes: int, sessions: int, messages: int, workers: int, *, share_of: int = 0) -> Run:
    running = start_cluster(root, nodes, lease_ttl=Settings.model_fields["lease_ttl"].default)
    cluster = running.cluster
    clients = clients_for(cluster)
    meter = CpuMeter(cluster_roots(cluster), running.database)
    run = Run(nodes, workers, share_of=share_of)
    try:
        with EventWatch(clients["n1"]) as watch:
            warm = link_sessions(watch, clients, range(WARM_UP * nodes), "w", workers)
            send_all(clients, watch, warm, len(warm) * 2, workers)
            time.sleep(1.0)
            run.phases[f"idle ({IDLE:g} s)"] = timed(meter, clients, 0, lambda: time.sleep(IDLE))
            linked: list[tuple[str, str]] = []
            run.phases["sessions linked"] = timed(meter, clients, sessions, lambda: linked.extend(
                link_sessions(watch, clients, range(sessions), "s", workers)))
            run.phases["messages"] = timed(meter, clients, messages,
                                           lambda: send_all(clients, watch, linked, messages, workers))
            run.phases[LINKED_IDLE] = timed(meter, clients, 0, lambda: time.sleep(IDLE))
            if nodes > 1:
                on_n1 = [pair for pair in linked if pair[0] == "n1"]
                run.phases[ONE_NODE] = timed(meter, clients, messages,
                                             lambda: send_all(clients, watch, on_n1, messages, workers))
        print(f"  {nodes} node(s){' (a share)' if share_of else ''}: " + ", ".join(f"{name} {phase.wall:.1f} s" for name, phase in run.phases.items()),
              flush=True)
    finally:
        for client in clients.values():
            client.close()
        running.stop()
    return run


def send_all(clients: dict[str, httpx.Client], watch: EventWatch, linked: list[tuple[str, str]], count: int,
             workers: int) -> None:
    """``count`` messages over ``linked`` sessions: even ones sent, odd ones received; then wait
    until every send is ``read`` (the receipts are part of the work)."""
    read_before = watch.receipts["read"]

    def one(i: int) -> None:
        node, session_id = linked[i % len(linked)]
        client = clients[node]
        if i % 2 == 0:
            r = client.post(f"/v1/sessions/{session_id}/messages",
                            json={"to": TO, "text": f"bench message {i}"})
            assert r.status_code == 201, r.text
        else:
            r = client.post(f"/v1/sessions/{session_id}/simulate",
                            json={"action": "message", "chat": TO, "text": f"bench message {i}"})
            assert r.status_code == 200, r.text

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    sends = (count + 1) // 2
    watch.wait(lambda: watch.receipts["read"] - read_before >= sends, f"{sends} read receipts", timeout=120)


def efficiency(root: Path, sessions: int, messages: int, workers: int, rounds: int, *,
               share: bool = False) -> list[Run]:
    """One node, then three, with the same workload (``rounds`` > 1: 1, 3, 3, 1, … so a change
    in the machine's other load weighs on both sizes alike); with ``share``, then one node at
    each node's share of the three-node load, every round."""
    order = [(1, 3), (3, 1)]
    runs: list[Run] = []
    for r in range(rounds):
        for nodes in order[r % 2]:
            runs.append(measure(root / f"eff{r}-{nodes}", nodes, sessions, messages, workers))
        if share:
            runs.append(measure(root / f"eff{r}-share", 1, sessions // 3, messages // 3, max(1, round(workers / 3)),
                                share_of=workers))
    return runs


def figures(runs: list[Run]) -> tuple[list[Figure], list[str]]:
    """The efficiency figures, and the lines of a breakdown of where the CPU went."""
    lines = [f"{'phase':<18} {'nodes':>5} {'load':>4} {'work':>5} {'wall s':>6} {'watui':>6} {'user/sys':>9} "
             f"{'switches':>8} {'postgres':>8} {'redis':>5} {'total':>6} {'work/CPU-s':>10} {'PG xacts':>8}  "
             f"{'watui by node':<20} {'events local/redis/pg':<21}  load"]
    for run in runs:
        for name, phase in run.phases.items():
            by_node = "/".join(f"{v:.2f}" for k, v in sorted(phase.cpu.items()) if k.startswith("watui"))
            feed = "/".join(f"{phase.counts.get(k, 0):.0f}" for k in ("local", "redis", "postgresql"))
            nodes = phase.nodes()
            lines.append(f"{name:<18} {run.nodes:>5}{'*' if run.share_of else ' '}{run.workers:>4} {phase.work:>5} "
                         f"{phase.wall:>6.1f} {phase.kind('watui'):>6.2f} {f'{nodes.user:.2f}/{nodes.system:.2f}':>9} "
                         f"{nodes.switches:>8} {phase.kind('postgres'):>8.2f} {phase.kind('redis'):>5.2f} "
                         f"{phase.total:>6.2f} {phase.work / phase.total if phase.work else 0:>10.1f} "
                         f"{phase.counts.get('xacts', 0):>8.0f}  {by_node:<20} {feed:<21}  {phase.load}")
    lines.append("(* one node at each node's share of the three-node load: a third of the work and of the calls)")
    sizes = [r for r in runs if not r.share_of]
    out: list[Figure] = []
    for run in sizes:
        idle, held = run.phases.get(f"idle ({IDLE:g} s)"), run.phases.get(LINKED_IDLE)
        linked = run.phases["sessions linked"].work + WARM_UP * run.nodes
        if idle is not None and held is not None and run.workers == sizes[0].workers:
            out.append(Figure(
                f"PostgreSQL transactions a second, {run.nodes} node(s), {linked} sessions held",
                held.counts.get("xacts", 0) / held.wall, "/s",
                note=f"with {WARM_UP * run.nodes} sessions: {idle.counts.get('xacts', 0) / idle.wall:.1f}/s"))
            out.append(Figure(
                f"PostgreSQL rows updated a second, {run.nodes} node(s), {linked} sessions held",
                held.counts.get("rows updated", 0) / held.wall, "/s",
                note=f"with {WARM_UP * run.nodes} sessions: {idle.counts.get('rows updated', 0) / idle.wall:.1f}/s"))

    def rate(of: list[Run], name: str) -> float:
        return sum(r.phases[name].work for r in of) / sum(r.phases[name].total for r in of)

    for workers in dict.fromkeys(r.workers for r in sizes):
        at = {n: [r for r in sizes if r.workers == workers and r.nodes == n] for n in (1, 3)}
        shares = [r for r in runs if r.share_of == workers]
        for name in ("sessions linked", "messages"):
            one, three = rate(at[1], name), rate(at[3], name)
            out += [
                Figure(f"{name} per CPU-s, 1 node, {workers} in flight (baseline)", one, "/CPU-s"),
                Figure(f"{name} per CPU-s, 3 nodes, {workers} in flight", three, "/CPU-s"),
                Figure(f"efficiency, {name}, {workers} in flight (3 nodes / 1)", three / one, "",
                       goal=0.8, op=">=", digits=2),
            ]
            if shares:
                share = rate(shares, name)
                out += [
                    Figure(f"{name} per CPU-s, 1 node at a share, {shares[0].workers} in flight", share, "/CPU-s",
                           note=f"{share / one:.2f}x of 1 node with all of the load: the lighter load alone"),
                    Figure(f"3 nodes / 1 node at a share, {name}", three / share, "", digits=2,
                           note="what being a cluster costs, at the same load per node"),
                ]
    return out, lines
