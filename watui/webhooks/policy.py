"""The retry policy, pure: which answers are retried, how long to wait, the tuning knobs."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({408, 429})
"""Besides every 5xx: the other 4xx answers are final."""


def is_retryable(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (an HTTP date is rare for webhooks: ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass
class WebhookOptions:
    """Tuning knobs. Tests shrink the delays; production keeps the defaults."""

    base_delay: float = 1.0
    """First retry after about this long; doubles per attempt (equal jitter)."""
    max_delay: float = 3600.0
    """Retries of one delivery are never further apart than this."""
    probe_max_delay: float = 10.0
    """A receiver that is down is probed at least this often, so a backlog starts draining
    within this long of it coming back (the probe is one request, so this can be short)."""
    max_in_flight: int = 64
    """Requests at once, over all owners. An owner with nothing in flight may always start one
    more, so a full dispatcher never makes an owner wait for another owner's receivers."""
    per_owner: int = 48
    """Requests at once for one owner's sessions: one owner's slow receivers cannot take every
    slot; the rest (and the one an idle owner may always start) are other owners'."""
    per_session: int = 4
    per_receiver: int = 16
    """Concurrent requests to one URL (and the size of its connection pool)."""
    receiver_idle: float = 300.0
    """A URL's connections are closed after this long without a request."""
    poll_interval: float = 1.0
    """Longest sleep between looks at the outbox (a safety net: commits wake it at once)."""
    cluster_poll_interval: float = 1.0
    """On PostgreSQL (a cluster), the longest sleep between looks: rows made due by other nodes'
    commits, or left by a node that died once its claims expire, wake nobody here."""
    claim_margin: float = 5.0
    """On PostgreSQL a claim on a row lasts the request timeout plus this long (the outcome's
    commit fits in it), then another node may take the row over."""
    pick_delay: float = 0.005
    """While requests run, wait this long after a wake-up before looking for more work."""
    sweep_interval: float = 60.0
    """How often rows past ``webhook_max_age`` that never got a last attempt are marked dead."""
    shutdown_grace: float = 2.0
    """On close, requests still running after this long are cancelled (and retried next start)."""
    max_age: float | None = None
    """Defaults to ``Settings.webhook_max_age``."""
    timeout: float | None = None
    """Defaults to ``Settings.webhook_timeout``; the whole request, not per read."""

    def backoff(self, n: int, rng: random.Random, cap: float | None = None) -> float:
        """The wait before retry ``n`` (1 = the first retry)."""
        cap = self.max_delay if cap is None else cap
        ceiling = min(cap, self.base_delay * 2 ** min(max(n - 1, 0), 60))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)
