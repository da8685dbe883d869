"""What the routes share: the server's state, the caller's service, the session-id type and
the strict body check. One place, so the routers of each resource do not copy them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from watui.models import Caller, Session
from watui.server.auth import require_caller, require_stream_caller
from watui.service import SessionService

if TYPE_CHECKING:
    from watui.server.state import ServerState

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

SessionId = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, max_length=64, description="the session's id")
]


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.watui
    return state


def service_for(caller: Caller, request: Request) -> SessionService:
    return state_of(request).manager.service(caller)


async def get_service(
    request: Request, caller: Annotated[Caller, Depends(require_caller)]
) -> SessionService:
    return service_for(caller, request)


async def get_stream_service(
    request: Request, caller: Annotated[Caller, Depends(require_stream_caller)]
) -> SessionService:
    return service_for(caller, request)


Service = Annotated[SessionService, Depends(get_service)]
StreamService = Annotated[SessionService, Depends(get_stream_service)]
CurrentCaller = Annotated[Caller, Depends(require_caller)]


def _integral_floats_as_ints(value: Any) -> Any:
    """``5.0`` is an integer in JSON Schema's eyes; strict pydantic would refuse it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def strict_json(model: type[BaseModel]) -> Any:
    """A dependency that checks the body against ``model`` in strict mode.

    FastAPI's own validation is lax: it takes ``"start": 0`` for ``false`` and ``"5"`` for
    ``5``, which the documented schema forbids. The route keeps its typed body parameter for
    the OpenAPI document and for the value; this only refuses what is not what it documents.
    """

    async def check(request: Request) -> None:
        raw = await request.body()
        try:
            data = _integral_floats_as_ints(json.loads(raw)) if raw else None
            model.model_validate_json(json.dumps(data), strict=True)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
            raise RequestValidationError(errors) from None
        except (ValueError, RecursionError):
            raise RequestValidationError(
                [{"loc": ("body",), "msg": "cannot be parsed as JSON", "type": "json_invalid"}]
            ) from None

    return Depends(check)


def session_json(session: Session, status_code: int = 200) -> JSONResponse:
    """A session as JSON, without the webhook secret or a URL password. Returned directly: the
    response model documents it, and skipping a second validation keeps listings fast."""
    return JSONResponse(session.public(), status_code=status_code)
