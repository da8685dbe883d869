"""Settings: every knob reads ``WATUI_<NAME>`` from the environment (pydantic-settings)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from watui.models import check_proxy


def check_proxy_setting(value: str | None) -> str | None:
    """``WATUI_PROXY`` is a session's proxy for every session: the same rules (empty: none)."""
    return check_proxy(value) if value else None


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def default_data_dir() -> Path:
    return platformdirs.user_data_path("watui", appauthor=False)


NODE_CAPACITY = {"simulated": 100_000, "neonize": 1_000}
"""``WATUI_NODE_CAPACITY`` when it is not set, by engine: running sessions one node takes on
before creates and starts answer ``503 OVERLOADED`` (docs/api.md, "Overload").

Simulated, measured on one 2-CPU machine with other work running on it: 100,000 sessions
created with start=true (200 at a time, through the manager) in 25-30 s and all linked in 30 s
more, none failed; 12 KiB RSS a session; event-loop lag p99 29 ms with all of them showing QR
codes at WhatsApp's timing (60 s, then 20 s), 3 ms once linked. What one node cannot keep up
with is QR rotation much faster than that, which the lag check (``overload_lag_ms``) catches:
100,000 sessions with codes every 20 s, then 10 s (up to 10,000 due a second) wrote 6,500
events a second with lag p99 1.3 s; 50,000 wrote the 3,700 a second due, lag p99 0.2 s.

neonize keeps the cluster's placement figure, 1,000: a real session holds a websocket, an auth
database and its share of an engine host, and the connection cap's default
(watui/server/connections.py) keeps file descriptors for this many."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATUI_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    engine: Literal["neonize", "simulated"] = "neonize"

    # Engine hosts: where engine sessions run (see docs/engine-hosts.md).
    engine_isolation: Literal["process", "inline"] | None = None
    """``process``: in supervised engine host processes; ``inline``: in this process. Unset:
    ``process`` for neonize, ``inline`` for simulated (see :attr:`isolation`)."""
    sessions_per_host: int = Field(50, ge=1)
    host_recycle_connects: int = Field(500, ge=1)
    restore_concurrency: int = Field(8, ge=1)

    # QR codes and pairing (real WhatsApp timing: 60 s, then 20 s, six codes a connection).
    qr_first_ttl: float = Field(60, gt=0)
    qr_next_ttl: float = Field(20, gt=0)
    qr_codes_per_attempt: int = Field(6, ge=1)
    qr_max_retries: int = Field(3, ge=0)
    pairing_timeout: float = Field(300, gt=0)
    pair_code_ttl: float = Field(160, gt=0)
    """whatsmeow gives a pairing code 160 s."""

    # Reconnects: capped exponential back-off with jitter.
    reconnect_base_delay: float = Field(1, ge=0)
    reconnect_max_delay: float = Field(60, ge=0)
    max_reconnect_attempts: int = Field(10, ge=0)

    # Owners.
    max_active_sessions_per_owner: int = Field(5, ge=0)

    # Store.
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "FULL"
    commit_max_batch: int = Field(64, ge=1)
    """Writes per transaction. Assembling a batch runs on the event loop, and every writer in
    it wakes at once when it commits, so small batches keep the loop responsive: at 10,000
    sessions driven at full speed, loop-lag p99 was 41 ms with 256 and 10 ms with 64, for the
    same throughput (bench/bench_engine.py). Also well below ``subscriber_queue_size``, so
    one commit cannot overflow a live subscriber."""

    # Headless server.
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    sse_ping_interval: float = Field(15, gt=0)
    subscriber_queue_size: int = Field(1024, ge=8)
    max_streams_per_key: int = Field(50, ge=1)
    max_streams: int = Field(5000, ge=1)
    header_timeout: float = Field(10, gt=0)
    """Seconds a connection gets to send its complete request headers (from when it opens, or
    from the first byte of its next request); then it is closed."""
    max_connections: int | None = Field(None, ge=1)
    """Client connections open at once; a connection past it is answered ``503 OVERLOADED``
    and closed. Unset: derived from the open-files limit (``watui.server.connections``)."""
    overload_lag_ms: float = Field(250, ge=0)
    """Creates that start and starts answer ``503 OVERLOADED`` while the event loop's lag p99
    over the last 100 probes (10 s) is above this many milliseconds; 0 turns the check off.
    Measured: a node that keeps up shows 10-30 ms (100,000 sessions at WhatsApp's QR timing;
    5,000 created over HTTP at 255 a second), one that falls behind 0.4-0.5 s (15,000 sessions
    with a code every 1-2 s: creates slowed to 86 a second, p50 0.6 s) and 1.3 s (see
    :data:`NODE_CAPACITY`)."""
    metrics_token: str | None = None
    log_format: Literal["text", "json"] = "text"

    # Sessions.
    proxy: str | None = None
    """``WATUI_PROXY``: the proxy (``socks5://[user:pass@]host:port``, ``http(s)://…``) of every
    session that has none of its own (``settings.proxy``). Checked like a session's."""

    # Webhooks.
    webhook_url: str | None = None
    webhook_timeout: float = Field(10, gt=0)
    webhook_max_age: float = Field(26 * 3600, gt=0, description="keep retrying for this long")
    webhook_allow_private: bool = False
    webhook_allowed_hosts: list[str] = Field(default_factory=list)

    # Cluster mode (docs/cluster.md): several nodes share PostgreSQL and Redis. Without a
    # database URL nothing changes: embedded SQLite, one process.
    database_url: str | None = None
    """``postgresql://…``: the store of record shared by every node of a cluster."""
    redis_url: str | None = None
    """``redis://…``: the event fan-out between nodes (Redis Streams)."""
    node_id: str = Field(default_factory=lambda: default_node_id())
    """This node's name in the cluster (default ``<host>-<pid>``)."""
    node_capacity: int = Field(NODE_CAPACITY["neonize"], ge=0)
    """Sessions this node runs at most, on a single node too: past it, creates that start and
    starts answer ``503 OVERLOADED``. Unset: :data:`NODE_CAPACITY` for the engine."""
    node_url: str | None = None
    """The URL other nodes reach this node's API at (default ``http://<host>:<port>``)."""
    lease_ttl: float = Field(4, gt=0, le=10)
    """Seconds a node's hold on a session lasts unless renewed (renewed every second, or every
    third of it if shorter): how long a dead node's sessions wait before another takes them."""
    rebalance_rate: float = Field(5, ge=0)
    """Sessions a second a node hands over (as a drain does) while it runs more than its share
    and another node has room, e.g. one that just joined; 0 turns rebalancing off."""
    cluster_secret: str | None = Field(None, min_length=16)
    """Signs node-to-node calls. Unset: the secret the cluster's first node made and stored
    in the database (the same for every node). Set it on every node, or on none."""
    route_timeout: float = Field(10, gt=0)
    """Seconds a node waits for the node that runs a session before ``503 NODE_UNAVAILABLE``."""

    # Retention.
    event_retention_days: float = Field(30, gt=0)
    message_retention_days: float = Field(90, gt=0)
    webhook_retention_days: float = Field(7, gt=0)
    media_retention_days: float = Field(30, gt=0)
    """Stored media files (sent and received) are deleted after this many days; their
    messages stay, and ``GET …/media`` then answers ``404 MEDIA_NOT_FOUND``."""
    media_max_total_bytes: int | None = Field(None, ge=0)
    """All sessions' media together; past it retention deletes the oldest files first."""

    # Media (watui/media): WhatsApp's caps per type, and the limits of what a send may bring.
    media_max_image_bytes: int = Field(5 * 1024 * 1024, ge=1)
    media_max_video_bytes: int = Field(16 * 1024 * 1024, ge=1)
    media_max_audio_bytes: int = Field(16 * 1024 * 1024, ge=1)
    """Audio and voice notes."""
    media_max_document_bytes: int = Field(100 * 1024 * 1024, ge=1)
    media_max_sticker_bytes: int = Field(500 * 1024, ge=1)
    media_max_body_bytes: int = Field(140 * 1024 * 1024, ge=1024)
    """The largest request body of a send or a simulate (base64 of the largest document)."""
    media_fetch_timeout: float = Field(30, gt=0)
    """Seconds a send's ``media.url`` has to download (connect, and the whole body)."""

    # Pacing (watui/manager/pacing.py)
    send_queue_limit: int = Field(1000, ge=1, le=1_000_000)
    """Pacing (``settings.send_rate``): the most sends one session's queue holds; one more is
    ``429 SEND_QUEUE_FULL``."""

    _proxy_format = field_validator("proxy")(check_proxy_setting)

    @model_validator(mode="after")
    def _capacity_for_the_engine(self) -> Settings:
        if "node_capacity" not in self.model_fields_set:
            self.node_capacity = NODE_CAPACITY[self.engine]
        return self

    @property
    def isolation(self) -> Literal["process", "inline"]:
        """The engine isolation in force (the setting, or the engine's default)."""
        if self.engine_isolation is not None:
            return self.engine_isolation
        return "process" if self.engine == "neonize" else "inline"

    @property
    def clustered(self) -> bool:
        """True when this process is a node of a cluster (a database URL is set)."""
        return self.database_url is not None

    @property
    def advertised_url(self) -> str:
        """Where other nodes reach this node's API."""
        if self.node_url:
            return self.node_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "watui.db"

    @property
    def auth_dir(self) -> Path:
        return self.data_dir / "auth"

    def auth_path(self, session_id: str) -> Path:
        return self.auth_dir / f"{session_id}.db"
