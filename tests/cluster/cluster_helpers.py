"""Real clusters for the tests: ``watui serve`` nodes as subprocesses on loopback ports over a
fresh PostgreSQL database and a private ``redis-server`` (so a test may kill and restart it
without touching the machine's shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pg_server import SERVER, admin_sql
from serve_process import ServerProcess

from watui.stores.postgres import PostgresStore

T = TypeVar("T")

LEASE_TTL = 3.0
"""Short leases so takeovers happen within a test's patience (the default is 10 s)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private ``redis-server`` that keeps nothing on disk, like the machine's own."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, "redis-server to answer", timeout=10)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(check: Callable[[], T], what: str, *, timeout: float = 20.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:  # a node restarting
            last = exc
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def create_key(dsn: str, owner: str, *, admin: bool = False) -> str:
    async def go() -> str:
        store = await PostgresStore.open(dsn)
        try:
            return (await store.create_api_key(owner, admin=admin))[1]
        finally:
            await store.close()

    return asyncio.run(go())


@dataclass
class Cluster:
    """``n`` nodes (``n1``, ``n2``, …) over one database and one Redis."""

    dsn: str
    redis: RedisServer
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, ServerProcess] = field(default_factory=dict)
    admin_key: str = ""

    def add(self, name: str, **env: str) -> ServerProcess:
        port = free_port()
        node = ServerProcess(
            self.root / name, port=port,
            env={
                "WATUI_DATABASE_URL": self.dsn, "WATUI_REDIS_URL": self.redis.url,
                "WATUI_NODE_ID": name, "WATUI_LEASE_TTL": str(LEASE_TTL),
                "WATUI_SSE_PING_INTERVAL": "0.5", "WATUI_WEBHOOK_ALLOW_PRIVATE": "true",
                # Sessions stay where a test puts them unless it turns rebalancing on.
                "WATUI_REBALANCE_RATE": "0",
                **self.env, **env,
            },
        )
        self.nodes[name] = node
        return node.start()

    def client(self, name: str, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.nodes[name].base_url, timeout=20,
            headers={"Authorization": f"Bearer {key or self.admin_key}"},
        )

    def session(self, via: str, session_id: str) -> dict[str, Any]:
        with self.client(via) as c:
            r = c.get(f"/v1/sessions/{session_id}")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()


def fresh_database() -> tuple[str, Callable[[], None]]:
    """A database of its own for one cluster (nodes use the default schema), and how to drop
    it (tests/pg_server.py names the server)."""
    name = "watui_cluster_" + secrets.token_hex(5)
    admin_sql(f'CREATE DATABASE "{name}"')
    return SERVER.rsplit("/", 1)[0] + "/" + name, lambda: admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_cluster(root: Path, nodes: tuple[str, ...] = (), *, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A cluster of its own (a fresh database, a private redis-server, an admin key) with
    ``nodes`` started; everything stopped and dropped afterwards."""
    dsn, drop = fresh_database()
    redis = RedisServer().start()
    c = Cluster(dsn, redis, root, env=dict(env or {}))
    try:
        c.admin_key = create_key(dsn, "admin", admin=True)
        for name in nodes:
            c.add(name)
        yield c
    finally:
        c.stop()
        redis.stop()
        drop()


def signal_node(node: ServerProcess, sig: signal.Signals) -> None:
    assert node.proc is not None
    node.proc.send_signal(sig)


def iter_nodes(cluster: Cluster) -> Iterator[str]:
    return iter(cluster.nodes)
