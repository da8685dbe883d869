"""Receivers: what the dispatcher knows about one URL (its gate and its connection pool)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from watui import __version__
from watui.webhooks.guard import WebhookGuard, guarded_transport


@dataclass
class Receiver:
    """One URL: requests in flight, its outage gate, and its own small connection pool."""

    url: str = ""
    origin: str = ""
    """scheme://host:port: URLs that share it are most likely one server."""
    in_flight: int = 0
    failures: int = 0
    """Consecutive retryable failures; while > 0, one probe at a time."""
    closed_until: datetime | None = None
    client: httpx.AsyncClient | None = None
    """Its own small connection pool: httpcore scans a whole pool (polling each socket) on
    every request, which at 64 connections cost 80% of the throughput measured with 8."""
    last_used: float = 0.0

    def blocked(self, now: datetime, cap: int) -> bool:
        """Whether no request may start now: at its cap, gate closed, or a probe running."""
        return (
            self.in_flight >= cap
            or (self.closed_until is not None and self.closed_until > now)
            or (self.failures > 0 and self.in_flight >= 1)
        )

    def http_client(self, *, cap: int, guard: WebhookGuard | None,
                    transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        """The URL's client, made on first use. With ``guard``, every connection it opens goes
        through the SSRF guard, on the address actually connected to."""
        self.last_used = time.monotonic()
        if self.client is None:
            if transport is None and guard is not None and guard.active:
                transport = guarded_transport(guard, max_connections=cap)
            self.client = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,  # a redirect is an answer, not an instruction to follow
                limits=httpx.Limits(max_connections=cap, max_keepalive_connections=cap),
                headers={"user-agent": f"watui/{__version__} (Standard Webhooks)",
                         "content-type": "application/json"},
            )
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()
