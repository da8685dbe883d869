"""Cluster mode: a call for a session that runs on another node is answered by that node.

Every node serves every route. Most reads come from the shared store and bus, so any node
answers them itself; but a call that needs the session's runtime (its engine, its timers) can
only be carried out by the node that holds the session's lease. :class:`RoutingMiddleware`
sends such a call there and hands the client exactly what that node answered (status,
headers that matter, body), as if the session ran here.

Which calls: every call under ``/v1/sessions/{id}`` and ``/v1/sessions/{id}/…`` that is not a
read (start, stop, restart, logout, delete, PATCH, pair-code, messages, simulate, …), plus
``GET /v1/sessions/{id}/qr`` (the live code is held by the runtime). The session itself, its
event log, its messages and its streams are read here.

The caller is authenticated here first (a bad key gets 401 without another node being
asked), and again by the owner, which receives the same ``Authorization`` header. A forwarded
call carries ``X-Watui-Forwarded-By: <node id>``, and a call that carries it is never
forwarded again: the node that receives it answers it itself, so a stale lease view on two
nodes cannot bounce a call between them. The header is signed with the cluster's secret
(``X-Watui-Forward-Signature``, :mod:`watui.cluster.identity`): a call that carries it unsigned,
or signed with another secret, is refused with ``403`` (a caller with a key cannot make a node
act for a session it does not run). An owner that refuses the connection or does not
answer within ``route_timeout`` seconds gives ``503 NODE_UNAVAILABLE`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watui.cluster.identity import SIGNATURE, sign, verify
from watui.cluster.types import Holder, Locator
from watui.errors import Forbidden, NodeUnavailable, WatuiError
from watui.stores.outages import is_outage, unavailable

log = logging.getLogger("watui.cluster.routing")

FORWARDED_BY = "X-Watui-Forwarded-By"
"""Set on a forwarded call to the id of the node that forwarded it."""

READS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_PATH = re.compile(r"^/v1/sessions/(?P<id>[^/]+)(?P<rest>/.*)?$")

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade",
})
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {"content-length", "accept-encoding", FORWARDED_BY.lower(),
                                        SIGNATURE.lower()}
"""``content-length`` is set again for the body sent; ``accept-encoding`` is left to the
client between the nodes, which decodes what it gets (so the body handed on is plain)."""
DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
"""``date`` and ``server`` are added by this node's own HTTP server; the body is handed on
decoded, whole, with its own length."""


_PLACING = re.compile(r"^/v1/sessions(/[^/]+/(start|restart))?/?$")


def placing_call(method: str, path: str) -> bool:
    """A call that makes a session run on the node that answers it (a create, a start, a
    restart): on a node at its capacity it goes to a node with room."""
    return method.upper() == "POST" and _PLACING.match(path) is not None


_ENGINE_CALL = re.compile(r"^/v1/sessions/[^/]+/(messages|pair-code|qr|simulate)/?$")


def needs_engine(method: str, path: str) -> bool:
    """A call only a running session can answer (a send, a pairing code, the live QR code):
    for a session that runs on no node it is ``503 NODE_UNAVAILABLE``, retried later, rather
    than a ``409`` that says the session is not connected for good."""
    return method.upper() in ("POST", "GET") and _ENGINE_CALL.match(path) is not None \
        and not (method.upper() == "GET" and not path.rstrip("/").endswith("/qr"))


def owner_call(method: str, path: str) -> str | None:
    """The session id when ``method path`` must be answered by the node that runs the session;
    None when any node answers it."""
    match = _SESSION_PATH.match(path)
    if match is None:
        return None
    if method.upper() in READS:
        return match["id"] if method.upper() == "GET" and match["rest"] == "/qr" else None
    return match["id"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the owner answered, ready to hand on."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Forwarder:
    """Sends calls to other nodes through one shared HTTP client (connections are reused)."""

    def __init__(
        self, node_id: str, timeout: float, *, secret: Callable[[], str] = lambda: "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.node_id = node_id
        self.timeout = timeout
        self.secret = secret
        """The cluster's secret, that every forwarded call is signed with."""
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=50),
            transport=transport,
        )

    async def forward(
        self,
        holder: Holder,
        session_id: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer:
        """``method target`` (path and query, as received) on ``holder``; its answer, or
        :class:`NodeUnavailable` if it refuses the connection or takes longer than the
        route timeout (the whole call, not each step)."""
        sent = [(k, v) for k, v in headers if k.decode("latin-1").lower() not in DROPPED_REQUEST_HEADERS]
        path = target.split("?", 1)[0]
        sent.append((FORWARDED_BY.encode(), self.node_id.encode()))
        sent.append((SIGNATURE.encode(), sign(self.secret(), self.node_id, method, unquote(path)).encode()))
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.request(
                    method, holder.url.rstrip("/") + target, headers=sent, content=body
                )
        except (TimeoutError, httpx.TransportError) as exc:
            why = "did not answer in time" if isinstance(exc, TimeoutError | httpx.TimeoutException) \
                else f"could not be reached ({type(exc).__name__})"
            log.warning("node %s at %s %s for %s %s", holder.node_id, holder.url, why, method, target)
            raise NodeUnavailable(
                f"Session {session_id!r} runs on node {holder.node_id!r}, which {why}."
                " Retry after Retry-After seconds.",
                details={"session_id": session_id, "node_id": holder.node_id},
            ) from None
        kept = [
            (k, v) for k, v in response.headers.raw
            if k.decode("latin-1").lower() not in DROPPED_RESPONSE_HEADERS
        ]
        return Answer(response.status_code, kept, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


Authenticate = Callable[[Request], Awaitable[object]]
"""Checks the caller's key (raising the service's ``Unauthorized``), as the routes do."""


class RoutingMiddleware:
    """ASGI middleware: calls for sessions another node runs are answered by that node.

    Sits inside the body-size cap (the body it forwards is already bounded and read in one
    piece) and outside the routes, so every route under ``/v1/sessions/{id}`` is covered,
    including ones added later.
    """

    def __init__(self, app: ASGIApp, locator: Locator, forwarder: Forwarder, authenticate: Authenticate) -> None:
        self.app = app
        self.locator = locator
        self.forwarder = forwarder
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session_id = owner_call(scope["method"], scope["path"])
        if session_id is None and not placing_call(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        forwarded_by = _header(scope, FORWARDED_BY)
        if forwarded_by is not None:  # from another node: answered here, if it is one of ours
            signature = _header(scope, SIGNATURE)
            if not verify(self.locator.secret, forwarded_by.decode("latin-1"), scope["method"], scope["path"],
                          signature.decode("latin-1") if signature is not None else None):
                await _refusal(Forbidden(
                    f"{FORWARDED_BY} is for the nodes of this cluster, and this call is not signed with"
                    " the cluster's secret (WATUI_CLUSTER_SECRET must be the same on every node, or unset)",
                    details={"header": FORWARDED_BY},
                ))(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        try:
            holder = await self.locator.locate(session_id) if session_id is not None else None
            if holder is None and placing_call(scope["method"], scope["path"]):
                holder = await self.locator.room_elsewhere()  # this node is full: one with room
            if holder is not None:  # (else the route checks the key, as on a single node)
                await self.authenticate(Request(scope, receive))
        except WatuiError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        except Exception as exc:  # a bug in a locator: the envelope the routes' catch-all gives, no trace
            if is_outage(exc):  # the database is away: retry later
                await _refusal(unavailable(exc, reading=True))(scope, receive, send)
                return
            log.exception("could not locate session %s", session_id)
            await _refusal(WatuiError("Internal server error"))(scope, receive, send)
            return
        if holder is None and session_id is not None and needs_engine(scope["method"], scope["path"]):
            try:
                nowhere = await self.locator.runs_nowhere(session_id)
            except Exception as exc:
                nowhere = False
                if is_outage(exc):
                    await _refusal(unavailable(exc, reading=True))(scope, receive, send)
                    return
            if nowhere:  # between nodes (or none has room): not "not connected", but "retry"
                await _refusal(NodeUnavailable(
                    f"Session {session_id!r} runs on no node right now: its node is gone and another"
                    " takes it over as soon as one has room. Retry after Retry-After seconds.",
                    details={"session_id": session_id, "node_id": None},
                ))(scope, receive, send)
                return
        if holder is None:  # this node runs it, or nobody does: answer here
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away
            return
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        try:
            answer = await self.forwarder.forward(
                holder, session_id or "(new)", scope["method"], target.decode("latin-1"), list(scope["headers"]), body
            )
        except NodeUnavailable as exc:
            await _refusal(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [*answer.headers, (b"content-length", str(len(answer.body)).encode())]})
        await send({"type": "http.response.body", "body": answer.body})


def _header(scope: Scope, name: str) -> bytes | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope["headers"]:
        if key.lower() == wanted:
            return bytes(value)
    return None


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _refusal(exc: WatuiError) -> Response:
    """The same envelope, status and headers the routes' error handler gives."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=exc.headers() or None)
