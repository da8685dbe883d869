"""Helpers for the cluster routing tests: a Locator the test places sessions with, a key both
nodes accept, and a raw TCP peer that records what it is sent (and answers, or never does)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from watui.cluster.types import Holder, NodeInfo
from watui.server import BackgroundServer


@dataclass
class MapLocator:
    """A :class:`~watui.cluster.types.Locator` that answers from ``placement`` (session id →
    the other node that runs it), as the real one answers from the leases table."""

    node_id: str
    lease_ttl: float = 10.0
    secret: str = "the-routing-tests-cluster-secret"
    placement: dict[str, Holder] = field(default_factory=dict)
    known_nodes: list[NodeInfo] = field(default_factory=list)
    room: Holder | None = None
    nowhere: set[str] = field(default_factory=set)
    """Sessions that want a node and have none (their node died)."""
    """Where creates and starts go while this node is full (None: it has room)."""

    async def locate(self, session_id: str) -> Holder | None:
        return self.placement.get(session_id)

    async def nodes(self) -> list[NodeInfo]:
        return list(self.known_nodes)

    async def room_elsewhere(self) -> Holder | None:
        return self.room

    async def runs_nowhere(self, session_id: str) -> bool:
        return session_id in self.nowhere


def share_key(source: BackgroundServer, target: BackgroundServer, secret: str) -> None:
    """Make ``secret`` (a key of ``source``) valid on ``target`` too, as one cluster database
    would: the same row, hash and all."""
    from watui.stores.base import hash_key

    assert source.manager is not None and target.manager is not None
    src, dst = source.manager.store, target.manager.store
    rows = source.call(lambda: src.fetchall(
        "SELECT id, owner, role, key_hash, prefix, created_at FROM api_keys WHERE key_hash = ?",
        [hash_key(secret)]))
    assert len(rows) == 1
    target.call(lambda: dst.write(statements=[(
        "INSERT INTO api_keys(id, owner, role, key_hash, prefix, created_at) VALUES (?,?,?,?,?,?)",
        tuple(rows[0]))]))


class RawPeer:
    """A TCP server on a loopback port that reads one HTTP request per connection, keeps it,
    and answers ``reply`` (or, with ``reply=None``, never answers: a node that hangs)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + body)
            if self.reply is not None:
                conn.sendall(self.reply)
        except OSError:
            return

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for conn in self._held:
            conn.close()


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
