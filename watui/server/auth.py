"""API keys: who is calling, and the first-start admin key.

Keys are looked up through the store, which keeps only their hashes. Every route depends on
:func:`require_caller`; the SSE routes use :func:`require_stream_caller`, which also takes the
key from ``?access_token=`` because a browser's ``EventSource`` cannot set headers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from watui.errors import Unauthorized
from watui.models import Caller
from watui.stores.datadir import ADMIN_KEY_FILE

if TYPE_CHECKING:
    from watui.config import Settings
    from watui.server.key_cache import KeyCache
    from watui.stores.base import StoreProtocol

MAX_KEY_LENGTH = 256
"""Longer strings are refused without touching the store."""


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <api key>` (create keys with `watui keys create`).",
)
access_token = APIKeyQuery(
    name="access_token",
    auto_error=False,
    scheme_name="AccessTokenQuery",
    description="The API key as a query parameter, for `EventSource` in browsers (SSE routes only).",
)


async def caller_for_secret(request: Request, secret: str | None) -> Caller:
    """The caller a key belongs to; :class:`Unauthorized` for a missing, unknown or revoked key."""
    if not secret:
        raise Unauthorized("An API key is required: send `Authorization: Bearer <key>`")
    if len(secret) > MAX_KEY_LENGTH or not secret.isascii():
        raise Unauthorized("Invalid API key")
    store: StoreProtocol = request.app.state.manager.store
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    key = await (cache.find(store, secret) if cache is not None else store.find_api_key(secret))
    if key is None or key.revoked_at is not None:
        raise Unauthorized("Invalid API key")
    caller = Caller(owner=key.owner, admin=key.role == "admin")
    # Streams count and end per key (watui.server.limits): they need to know which one.
    request.state.api_key_id = key.id
    request.state.caller = caller
    return caller


async def require_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    return await caller_for_secret(request, credentials.credentials if credentials else None)


async def caller_from_header(request: Request) -> Caller:
    """:func:`require_caller` outside FastAPI's dependencies (the cluster router, which runs
    before any route): the ``Authorization: Bearer`` header read the way ``bearer`` reads it."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
    secret = credentials if scheme.lower() == "bearer" and credentials else None
    return await caller_for_secret(request, secret)


async def require_stream_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    token: Annotated[str | None, Depends(access_token)],
) -> Caller:
    secret = credentials.credentials if credentials else token
    return await caller_for_secret(request, secret)


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` readable by its owner only (0600), even if the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)


async def ensure_admin_key(store: StoreProtocol, settings: Settings) -> str | None:
    """On a first start (no key at all), create an admin key and save it to ``admin.key``.

    Returns the new secret so the caller can print it once, or ``None`` if keys exist.
    """
    if await store.count_api_keys() > 0:
        return None
    _, secret = await store.create_api_key("admin", admin=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    write_secret_file(settings.data_dir / ADMIN_KEY_FILE, secret)
    return secret
