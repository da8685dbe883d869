"""The FastAPI app: thin routes over :class:`watui.service.SessionService`.

Each route authenticates the caller, asks the manager for a service scoped to that caller's
owner and makes one service call. Nothing about a session's lifecycle is decided here. One
router per resource: sessions (:mod:`.routes_sessions`), streams (:mod:`.routes_streams`),
webhook deliveries (:mod:`.routes_webhooks`), message statistics (:mod:`.routes_stats`), the cluster's nodes (:mod:`.routes_cluster`)
and the server's own routes (:mod:`.routes_server`: health, metrics, docs); what they share is
in :mod:`.deps`. In cluster mode, calls for sessions that run on another node are answered by
that node (:mod:`watui.cluster.routing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from watui import __version__
from watui.cluster.routing import Forwarder, RoutingMiddleware
from watui.logs import throttle_repeats
from watui.qr_drawings import drawings
from watui.server.auth import caller_from_header
from watui.server.errors import BodyLimit, install_error_handlers
from watui.server.key_cache import KeyCache
from watui.server.media_http import MEDIA_BODY_PATHS
from watui.server.openapi import install as install_openapi
from watui.server.routes_bulk import bulk_router
from watui.server.routes_cluster import cluster_router
from watui.server.routes_engine import engine_router
from watui.server.routes_events import events_router
from watui.server.routes_server import install_docs, server_router
from watui.server.routes_sessions import sessions_router
from watui.server.routes_stats import stats_router
from watui.server.routes_streams import streams_router
from watui.server.routes_webhooks import webhooks_router
from watui.server.schemas import ErrorResponse
from watui.server.state import ServerState

if TYPE_CHECKING:
    from watui.cluster.types import Locator
    from watui.config import Settings
    from watui.manager import SessionManager

__all__ = ["ServerState", "create_app"]


def create_app(
    manager: SessionManager,
    settings: Settings | None = None,
    *,
    owns_manager: bool = False,
    send_timeout: float = 30.0,
    locator: Locator | None = None,
) -> FastAPI:
    """The HTTP + SSE app over an open manager.

    With ``owns_manager`` the app closes the manager when it shuts down (``watui serve``);
    otherwise the caller does. ``send_timeout`` drops an SSE client that stops reading. A
    ``locator`` (cluster mode) routes calls for sessions that run on other nodes to them
    (:mod:`watui.cluster.routing`) and feeds ``GET /v1/cluster``; a manager that is a
    cluster node is its own locator.
    """
    settings = settings or manager.settings
    if locator is None:
        locator = manager.cluster
    state = ServerState(manager, settings, send_timeout, locator)
    # QR PNGs are drawn when a stream, a webhook or GET .../qr needs one, in a process of their
    # own: drawing in a thread would take the GIL from the event loop.
    drawings.use_process()
    throttle_repeats()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop_streams()
            if forwarder is not None:
                await forwarder.aclose()
            if owns_manager:
                await manager.aclose()

    app = FastAPI(
        title="watui",
        version=__version__,
        summary="Many WhatsApp linked-device sessions over HTTP and Server-Sent Events.",
        description=(
            "Every error answers `{\"error\": {\"code\", \"message\", \"details\"}}`; each route "
            "lists its codes. Authenticate with `Authorization: Bearer <api key>` (SSE routes "
            "also take `?access_token=`)."
        ),
        lifespan=lifespan,
        responses={413: {"model": ErrorResponse, "description": "`PAYLOAD_TOO_LARGE`"}},
        docs_url=None,  # served from the package's own Swagger UI files: install_docs
        redoc_url=None,
    )
    app.state.watui = state
    app.state.manager = manager
    if locator is not None:  # keys live in PostgreSQL: keep working through its outages
        app.state.key_cache = KeyCache(settings.lease_ttl)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    routers = [
        server_router(), sessions_router(simulated=state.simulated), streams_router(), webhooks_router,
        engine_router, events_router, bulk_router, cluster_router, stats_router,
    ]
    app.state.route_methods = [
        (route.path_regex, frozenset(route.methods or ()))
        for router in routers for route in router.routes if isinstance(route, APIRoute)
    ]
    for router in routers:
        app.include_router(router)
    forwarder: Forwarder | None = None
    if locator is not None:
        # Inside the body cap (added before it = nearer the routes): what it forwards is bounded.
        forwarder = Forwarder(locator.node_id, settings.route_timeout, secret=lambda: locator.secret)
        app.add_middleware(RoutingMiddleware, locator=locator, forwarder=forwarder,
                           authenticate=caller_from_header)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, large_bytes=settings.media_max_body_bytes,
                       large_paths=MEDIA_BODY_PATHS)
    if settings.cors_origins:
        # Added last = outermost: refusals (401, 413, …) carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Accept"],
        )
    return app
