"""``GET /metrics``: the server's figures in the Prometheus text format (prometheus-client).

Each app has its own :class:`~prometheus_client.CollectorRegistry` (several servers can share a
process: the tests). What already has a counter elsewhere (sessions, open streams, deliveries
by outcome, engine hosts) is read at scrape time by a collector; what happens only here (events
committed, commit latency, event-loop lag) is counted as it happens. A scrape reads the webhook
backlog from the store, so the handler gathers the async figures first, then renders.

The lag probe also keeps the recent window (:class:`LagWindow`) that admission reads: while its
p99 is above ``WATUI_OVERLOAD_LAG_MS``, creates and starts answer ``503 OVERLOADED``
(watui/manager/admission.py).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watui.models import Caller, Event

if TYPE_CHECKING:
    from watui.cluster.node import ClusterNode
    from watui.server.state import ServerState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOP_LAG_INTERVAL = 0.1
"""The lag probe sleeps this long and measures how late it wakes."""
LAG_WINDOW = 100
"""Probes in the window admission reads: the last 10 s (longer while the loop runs late). A
stall delays the one probe pending, so a p99 of 100 probes (the second worst) shrugs off one
garbage-collector pause but not two."""


class LagWindow:
    """The last :data:`LAG_WINDOW` lag samples and their p99, kept up to date as each sample
    comes (a partial selection of 100 numbers, ten times a second), so that reading it, once
    per create or start, is a field read. None until the window is full: a p99 of fewer
    samples is mostly the worst one (and a server that just started has no history)."""

    def __init__(self, size: int = LAG_WINDOW, quantile: float = 0.99) -> None:
        self.samples: deque[float] = deque(maxlen=size)
        self._rank_from_top = size - max(1, math.ceil(quantile * size)) + 1
        """Which largest sample is the quantile: 2 for the p99 of 100 (nearest rank)."""
        self._p99: float | None = None

    def add(self, lag: float) -> None:
        self.samples.append(lag)
        if len(self.samples) == self.samples.maxlen:
            self._p99 = heapq.nlargest(self._rank_from_top, self.samples)[-1]

    def lag_p99(self) -> float | None:
        return self._p99


class _Scraped(Collector):
    """Figures read when scraped (prepared by :meth:`ServerMetrics.render`)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        v = self.values
        sessions = GaugeMetricFamily("watui_sessions", "Sessions by status and owner", labels=["status", "owner"])
        for (status, owner), n in sorted(v.get("sessions", Counter()).items()):
            sessions.add_metric([status, owner], n)
        yield sessions
        yield GaugeMetricFamily("watui_sse_clients", "Open SSE streams", value=v.get("sse_clients", 0))
        yield CounterMetricFamily("watui_sse_refused", "Streams refused with 429 TOO_MANY_STREAMS",
                                  value=v.get("sse_refused", 0))
        yield GaugeMetricFamily("watui_webhook_backlog", "Webhook deliveries pending",
                                value=v.get("webhook_backlog", 0))
        outcomes = CounterMetricFamily("watui_webhook_attempts", "Webhook attempts by outcome since start",
                                       labels=["outcome"])
        for outcome in ("delivered", "retry", "failed", "dead"):
            outcomes.add_metric([outcome], v.get("outcomes", Counter()).get(outcome, 0))
        yield outcomes
        yield CounterMetricFamily("watui_session_reconnects",
                                  "Reconnects that succeeded, summed over the sessions that exist",
                                  value=v.get("reconnects", 0))
        yield GaugeMetricFamily("watui_engine_hosts", "Engine host processes", value=v.get("hosts", 0))
        yield CounterMetricFamily("watui_engine_host_restarts", "Engine hosts restarted (all slots)",
                                  value=v.get("host_restarts", 0))
        yield GaugeMetricFamily("watui_sessions_running", "Sessions running on this node (what counts"
                                " against its capacity)", value=v.get("running", 0))
        yield GaugeMetricFamily("watui_node_capacity", "Sessions this node runs at most (WATUI_NODE_CAPACITY)",
                                value=v.get("capacity", 0))
        lag_p99 = v.get("lag_p99")
        yield GaugeMetricFamily("watui_event_loop_lag_p99_seconds",
                                "Event-loop lag p99 over the last 100 probes (NaN until there are 100)",
                                value=math.nan if lag_p99 is None else lag_p99)
        refused = CounterMetricFamily("watui_overload_refusals", "Creates and starts refused with"
                                      " 503 OVERLOADED since start, by reason", labels=["reason"])
        for reason in ("capacity", "loop_lag"):
            refused.add_metric([reason], v.get("refused", Counter()).get(reason, 0))
        yield refused
        cluster = v.get("cluster")
        if cluster is not None:  # cluster mode only
            yield GaugeMetricFamily("watui_cluster_leases", "Sessions this node holds the lease on",
                                    value=cluster["leases"])
            yield CounterMetricFamily("watui_cluster_takeovers", "Sessions this node took over from others",
                                      value=cluster["takeovers"])
            yield CounterMetricFamily("watui_cluster_handoffs", "Sessions this node handed over to nodes"
                                      " with more room (rebalancing)", value=cluster["handed_off"])
            yield CounterMetricFamily("watui_cluster_stranded", "Sessions of dead nodes this node marked as"
                                      " running nowhere (no node had room)", value=cluster["stranded"])
            yield GaugeMetricFamily("watui_cluster_redis_connected",
                                    "1 while the event fan-out reads Redis, 0 while it polls PostgreSQL",
                                    value=cluster["redis_connected"])
            sources = CounterMetricFamily("watui_cluster_events_delivered",
                                          "Events this node fanned out, by where they came from",
                                          labels=["source"])
            for source in ("local", "redis", "postgresql"):
                sources.add_metric([source], cluster[source])
            yield sources
            yield CounterMetricFamily("watui_cluster_stream_reads", "Reads of the Redis stream of commits that"
                                      " brought entries (each brings every entry that arrived since the last)",
                                      value=cluster["stream_reads"])


class ServerMetrics:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = PromCounter("watui_events_written", "Events committed to the log", ["type"],
                                  registry=self.registry)
        self.commit_seconds = Histogram(
            "watui_store_commit_seconds", "Store transaction latency (BEGIN to COMMIT)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "watui_event_loop_lag_seconds", "How late the event loop runs a timer",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.lag_window = LagWindow()
        admission = state.manager.admission
        admission.lag = self.lag_window
        self._scraped = _Scraped()
        self.registry.register(self._scraped)
        store = state.manager.store
        store.on_commit.append(self._on_commit)
        observers = getattr(store, "commit_observers", None)
        if observers is not None:
            observers.append(self.commit_seconds.observe)

    def _on_commit(self, events: list[Event]) -> None:
        for kind, n in Counter(e.type.value for e in events).items():
            self.events.labels(kind).inc(n)

    async def watch_loop_lag(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LOOP_LAG_INTERVAL)
            lag = max(0.0, time.perf_counter() - started - LOOP_LAG_INTERVAL)
            self.loop_lag.observe(lag)
            self.lag_window.add(lag)

    async def render(self) -> bytes:
        """The exposition text, with the figures read now."""
        state = self.state
        manager = state.manager
        page = await manager.service(Caller.local_admin()).list_sessions(limit=None)
        hosts = manager.engine.hosts() if hasattr(manager.engine, "hosts") else []
        dispatcher = manager.webhooks
        self._scraped.values = {
            "sessions": Counter((s.status.value, s.owner) for s in page.sessions),
            "reconnects": sum(s.reconnect_count for s in page.sessions),
            "sse_clients": state.streams.count,
            "sse_refused": state.streams.refused,
            "webhook_backlog": await dispatcher.pending_count() if dispatcher is not None else 0,
            "outcomes": dispatcher.outcomes if dispatcher is not None else Counter(),
            "hosts": len(hosts),
            "host_restarts": sum(h.restarts for h in hosts),
            "cluster": _cluster_figures(manager.cluster) if manager.cluster is not None else None,
            "running": manager.admission.running(),
            "capacity": manager.admission.capacity,
            "lag_p99": self.lag_window.lag_p99(),
            "refused": manager.admission.refused,
        }
        return generate_latest(self.registry)


def _cluster_figures(node: ClusterNode) -> dict[str, float]:
    feed = node.feed
    return {
        "leases": len(node.leases.tokens), "takeovers": node.takeovers,
        "handed_off": node.handed_off, "stranded": node.stranded,
        "redis_connected": 1.0 if feed.redis_connected else 0.0,
        "local": feed.events_local, "redis": feed.events_from_redis, "postgresql": feed.events_from_pg,
        "stream_reads": feed.reads,
    }
