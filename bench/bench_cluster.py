"""Cluster mode (issues 9 and 20) on this machine: one node against three, routing, failover.

    .venv/bin/python -m bench.bench_cluster [--only PART ...] [--sessions 300] [--kills 10] …

Real ``watui serve`` subprocesses (simulated engine) over a fresh PostgreSQL database (on the
server ``WATUI_TEST_PG`` names, as in the tests) and a private ``redis-server``, driven over HTTP,
as in tests/cluster/test_multinode.py. Four parts, each alone with ``--only`` (all by default):

1. ``burst`` (bench/bench_cluster_failover.py): **sessions created/s** for ``--sessions``
   creates, 24 in flight, round-robin over the nodes, and the **events/s** committed meanwhile;
   one node is the baseline, the same load on three nodes, same run.
2. ``efficiency`` (bench/bench_cluster_efficiency.py): **work per CPU-second** with three nodes
   over one (goal ≥ 0.8), for sessions created and linked (``--eff-sessions``) and messages
   sent and received (``--eff-messages``); CPU of the nodes, their PostgreSQL backends and Redis;
   at each load of ``--eff-workers`` (calls in flight; 16, a light load, and 144 by default);
   with ``--eff-share``, also one node at each node's share of the three-node load, which
   splits the efficiency into what the lighter load costs a node and what the cluster costs.
3. ``routing`` (bench/bench_cluster_routing.py): p50/p99 of a send answered by the node that
   runs the session against the same send through another node, ``--route-calls`` of each.
4. ``failover`` (bench/bench_cluster_failover.py): ``--kills`` times, link 5 sessions on one
   node, ``kill -9`` it, time until every one of them is connected on another node, then start a
   replacement. p50/p99 over the kills, with ``--lease-ttl`` (default 4 s, the setting's
   default; takeover waits for the dead node's leases to expire, so it is about the TTL plus a
   fraction of a second), after the same rounds with ``--baseline-ttl`` (10 s, the default before) as the
   baseline. ``--skip-burst`` (as before) runs this part alone.

A 2-core machine runs three nodes, PostgreSQL and Redis on the same two cores, so three nodes
cannot be faster here than one; the figures show what the cluster costs, not what it scales to.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import bench_cluster_efficiency as eff
from bench import bench_cluster_routing as route
from bench._util import Figure, load_average, percentile, print_table
from bench.bench_cluster_failover import bursts, failover
from watui.config import Settings

PARTS = ("burst", "efficiency", "routing", "failover")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run this part (repeat for several) [all of them]")
    parser.add_argument("--sessions", type=int, default=300, help="creates in the burst [300]")
    parser.add_argument("--eff-sessions", type=int, default=200,
                        help="sessions created and linked per cluster size [200]")
    parser.add_argument("--eff-messages", type=int, default=1500,
                        help="messages per cluster size, half sent and half received [1500]")
    parser.add_argument("--eff-workers", type=int, action="append",
                        help="calls in flight; repeat to measure at several loads"
                             f" [{' and '.join(map(str, eff.LOADS))}]")
    parser.add_argument("--eff-share", action="store_true",
                        help="also measure one node at each node's share of the three-node load"
                             " (a third of the work and of the calls in flight)")
    parser.add_argument("--eff-rounds", type=int, default=1,
                        help="measure 1 and 3 nodes this many times (1, 3, then 3, 1, …) [1]")
    parser.add_argument("--route-calls", type=int, default=300, help="timed sends of each kind [300]")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease-ttl", type=float, default=Settings.model_fields["lease_ttl"].default,
                        help="lease TTL for the failover rounds [the setting's default]")
    parser.add_argument("--baseline-ttl", type=float, default=10.0,
                        help="the same failover rounds with this TTL first, as the baseline (0: skip)"
                             " [10 s, the default before issue 20]")
    parser.add_argument("--skip-burst", action="store_true", help="only the failover rounds")
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    if args.skip_burst:
        parts = {"failover"}
    print(f"load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "burst" in parts:
            rates = bursts(root / "burst", args.sessions)
            (s1, e1), (s3, e3) = rates[1], rates[3]
            print_table(f"cluster: one node vs three (same run; load average {load_average()})", [
                Figure("sessions created/s, 1 node (baseline)", s1, "/s"),
                Figure("sessions created/s, 3 nodes", s3, "/s", note=f"{s3 / s1:.2f}x of one node"),
                Figure("events/s, 1 node (baseline)", e1, "/s"),
                Figure("events/s, 3 nodes", e3, "/s", note=f"{e3 / e1:.2f}x of one node"),
            ])
        if "efficiency" in parts:
            runs = [run for workers in args.eff_workers or eff.LOADS
                    for run in eff.efficiency(root / f"efficiency-{workers}", args.eff_sessions, args.eff_messages,
                                              workers, args.eff_rounds, share=args.eff_share)]
            figures, breakdown = eff.figures(runs)
            print("\nCPU-seconds by process kind (nodes, their PostgreSQL backends, redis-server)")
            print("\n".join(breakdown))
            print_table(f"cluster efficiency: work per CPU-second, 3 nodes / 1 (load average {load_average()})",
                        figures)
        if "routing" in parts:
            latencies = route.routing(root / "routing", args.route_calls)
            print_table(f"cluster routing: a routed send against a local one (load average {latencies.load})",
                        route.figures(latencies))
        if "failover" in parts:
            failover_part(root, args)


def failover_part(root: Path, args: argparse.Namespace) -> None:
    baseline = failover(root / "baseline", args.kills, args.baseline_ttl) if args.baseline_ttl else []
    kills = failover(root / "failover", args.kills, args.lease_ttl)
    figures = []
    if baseline:
        figures += [
            Figure(f"failover p50, lease TTL {args.baseline_ttl:g} s (baseline)", percentile(baseline, 50),
                   "s", digits=2),
            Figure("failover p99 (baseline)", percentile(baseline, 99), "s", digits=2),
        ]
    ratio = (lambda q: f"{percentile(kills, q) / percentile(baseline, q):.2f}x of the baseline") if baseline \
        else (lambda q: "")
    figures += [
        Figure(f"failover p50 ({len(kills)} kills, lease TTL {args.lease_ttl:g} s)", percentile(kills, 50),
               "s", goal=15, digits=2, note=ratio(50)),
        Figure("failover p99", percentile(kills, 99), "s", goal=6, digits=2, note=ratio(99)),
    ]
    print_table(f"cluster failover (load average {load_average()})", figures)


if __name__ == "__main__":
    main()
