"""The server's own routes: ``/v1/health``, ``/metrics`` and the API docs at ``/docs``, whose
Swagger UI assets are served from the installed package (no CDN: closed networks see it too)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles

from watui import __version__
from watui.errors import Forbidden, StoreUnavailable
from watui.server.auth import bearer, caller_for_secret
from watui.server.deps import state_of
from watui.server.metrics import CONTENT_TYPE
from watui.server.schemas import Health, error_responses

DOCS_ASSETS = "/docs/assets"


def server_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/health", response_model=Health, tags=["server"],
                responses=error_responses(503, auth=False))
    async def health(request: Request) -> Health:
        """Liveness: answers without a key, also while start-up restore is under way
        (`restoring`). `503 STORE_UNAVAILABLE` once the store cannot write again until
        watui restarts (its writer died): a supervisor that restarts on a failing health
        check brings it back."""
        state = state_of(request)
        if (reason := state.manager.store.broken) is not None:
            raise StoreUnavailable(f"The store cannot write any more ({reason}). Restart watui.",
                                   details={"reason": reason})
        problems: list[str] = []
        cluster = state.manager.cluster
        if cluster is not None and cluster.database_down_since is not None:
            problems.append(f"the database has not answered for {time.monotonic() - cluster.database_down_since:.0f} s")
        if (failing := state.manager.store.failing) is not None:
            problems.append(f"store writes are failing: {failing}")
        return Health(status="degraded" if problems else "ok", problems=problems, version=__version__,
                      engine=state.settings.engine, restoring=state.manager.restore_progress)

    @router.get(
        "/metrics", tags=["server"], response_class=Response,
        responses={200: {"description": "Prometheus text format",
                         "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
                   **error_responses(403)},
    )
    async def metrics(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Response:
        """Sessions by status and owner, events written, SSE clients, webhook backlog and
        attempts by outcome, reconnects, engine host restarts, store commit latency and
        event-loop lag. Readable with an admin key or `WATUI_METRICS_TOKEN`."""
        state = state_of(request)
        secret = credentials.credentials if credentials else None
        token = state.settings.metrics_token
        if not (token and secret and hmac.compare_digest(secret.encode(), token.encode())):
            caller = await caller_for_secret(request, secret)
            if not caller.admin:
                raise Forbidden("Metrics need an admin key or the metrics token")
        return Response(await state.metrics.render(), media_type=CONTENT_TYPE)

    return router


def install_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI's files from the ``swagger-ui-bundle-v2`` package."""
    import swagger_ui_bundle

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="watui API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=oauth2_redirect,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
