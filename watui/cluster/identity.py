"""Which cluster this is, and the secret its nodes sign their calls to each other with.

A cluster is one PostgreSQL database. The first node to start there makes the ``cluster``
row: a random id and a random secret (``WATUI_CLUSTER_SECRET``, when set, is used instead of
the stored secret: every node of the cluster must then be given the same one).

- The **id** namespaces the cluster's keys in Redis (``watui:<id>:commits``), so two clusters
  sharing one Redis never read each other's commits.
- The **secret** signs node-to-node calls (:func:`sign`, :func:`verify`): a call forwarded by
  another node carries ``X-Watui-Forwarded-By`` with a signature over the node id, the method,
  the target and the time, and only a signed call is answered as a forwarded one. Anyone else
  who sends the header gets ``403``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import asyncpg

SIGNATURE = "X-Watui-Forward-Signature"
"""``t=<unix seconds>,v1=<hex HMAC-SHA256>`` on every forwarded call."""
MAX_SKEW = 60.0
"""Seconds a signature stays good (nodes' clocks may differ this much, and a captured call
cannot be replayed later than this)."""


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    id: str
    secret: str

    @property
    def stream(self) -> str:
        """The Redis Stream this cluster's nodes publish their commits to."""
        return f"watui:{self.id}:commits"


async def load_identity(pool: asyncpg.Pool, secret: str | None = None) -> ClusterIdentity:
    """The cluster's identity, made at the first node's first start. ``secret``: the
    operator's own (``WATUI_CLUSTER_SECRET``), used instead of the stored one."""
    row = await pool.fetchrow(
        "INSERT INTO cluster(one, id, secret) VALUES (true, $1, $2) ON CONFLICT (one) DO NOTHING"
        " RETURNING id, secret",
        secrets.token_hex(8), secrets.token_urlsafe(32))
    if row is None:
        row = await pool.fetchrow("SELECT id, secret FROM cluster")
    return ClusterIdentity(id=row[0], secret=secret or row[1])


def _mac(secret: str, node_id: str, method: str, target: str, at: int) -> str:
    message = f"{node_id}\n{method.upper()}\n{target}\n{at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, node_id: str, method: str, target: str, *, now: float | None = None) -> str:
    """The signature header's value for a call ``node_id`` forwards."""
    at = int(time.time() if now is None else now)
    return f"t={at},v1={_mac(secret, node_id, method, target, at)}"


def verify(secret: str, node_id: str, method: str, target: str, signature: str | None, *,
           now: float | None = None) -> bool:
    """True when ``signature`` was made with the cluster's secret for this very call, lately."""
    if not signature:
        return False
    try:
        fields = dict(part.split("=", 1) for part in signature.split(","))
        at = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > MAX_SKEW:
        return False
    return hmac.compare_digest(given, _mac(secret, node_id, method, target, at))
