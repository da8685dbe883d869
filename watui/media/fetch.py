"""Fetching a send's ``media.url`` under the webhook address rules
(:mod:`watui.webhooks.guard`): no loopback, private, link-local or other non-public target
unless ``WATUI_WEBHOOK_ALLOW_PRIVATE`` or ``WATUI_WEBHOOK_ALLOWED_HOSTS`` allow it, checked
on the address actually connected to (redirects too), within a timeout and a size cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from watui.media.errors import MediaFetchFailed, MediaTooLarge, MediaUrlForbidden
from watui.webhooks.guard import (
    ForbiddenAddress,
    WebhookGuard,
    WebhookUrlForbidden,
    guarded_transport,
)

MAX_REDIRECTS = 3


async def fetch_to_file(
    url: str, target: Path, *, guard: WebhookGuard, timeout: float, max_bytes: int,
) -> str | None:
    """Download ``url`` into ``target`` (created 0600); the ``Content-Type`` it answered with.

    Refusals: :class:`MediaUrlForbidden` (the address rules), :class:`MediaTooLarge` (more than
    ``max_bytes``), :class:`MediaFetchFailed` (not 2xx, a network error, over ``timeout``)."""
    try:
        await guard.check_url(url)
    except WebhookUrlForbidden as exc:
        raise MediaUrlForbidden(
            exc.message.replace("webhook_url", "media.url"), details=exc.details
        ) from None
    deadline = time.monotonic() + timeout
    transport = guarded_transport(guard, max_connections=1) if guard.active else httpx.AsyncHTTPTransport()
    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        ) as client, client.stream("GET", url) as response:
            if not response.is_success:
                raise MediaFetchFailed(
                    f"fetching media.url answered HTTP {response.status_code}",
                    details={"url": url, "status_code": response.status_code},
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(int(declared), max_bytes)
            size = 0
            fd = _create(target)
            with open(fd, "wb") as out:  # noqa: ASYNC230 - a file descriptor, writes of 256 KiB
                async for chunk in response.aiter_bytes(256 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(size, max_bytes)
                    if time.monotonic() > deadline:
                        raise MediaFetchFailed(f"fetching media.url took over {timeout:g} s",
                                               details={"url": url})
                    out.write(chunk)
            return response.headers.get("content-type")
    except ForbiddenAddress as exc:
        raise MediaUrlForbidden(
            f"media.url may not point at {str(exc).removeprefix('forbidden address: ')}; an operator "
            "can allow it with WATUI_WEBHOOK_ALLOWED_HOSTS or WATUI_WEBHOOK_ALLOW_PRIVATE",
            details={"url": url},
        ) from None
    except httpx.HTTPError as exc:
        raise MediaFetchFailed(f"fetching media.url failed: {exc or type(exc).__name__}",
                               details={"url": url}) from None


def _too_large(size: int, max_bytes: int) -> MediaTooLarge:
    return MediaTooLarge(f"media.url's file is over {max_bytes} bytes",
                         details={"size": size, "max_bytes": max_bytes})


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
