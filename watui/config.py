"""Settings: every knob reads ``WATUI_<NAME>`` from the environment (pydantic-settings)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def default_data_dir() -> Path:
    return platformdirs.user_data_path("watui", appauthor=False)


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
    metrics_token: str | None = None
    log_format: Literal["text", "json"] = "text"

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
    node_capacity: int = Field(1000, ge=0)
    """Sessions this node runs at most."""
    node_url: str | None = None
    """The URL other nodes reach this node's API at (default ``http://<host>:<port>``)."""
    lease_ttl: float = Field(10, gt=0, le=10)
    """Seconds a node's hold on a session lasts unless renewed (renewed every third of it)."""
    route_timeout: float = Field(10, gt=0)
    """Seconds a node waits for the node that runs a session before ``503 NODE_UNAVAILABLE``."""

    # Retention.
    event_retention_days: float = Field(30, gt=0)
    message_retention_days: float = Field(90, gt=0)
    webhook_retention_days: float = Field(7, gt=0)

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
