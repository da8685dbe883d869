"""Sign and post one delivery (Standard Webhooks), and turn what happened into an outcome."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from watui.machine import EventType
from watui.models import Event, mask_url
from watui.qr_drawings import drawings
from watui.webhooks.guard import ForbiddenAddress
from watui.webhooks.outbox import Due
from watui.webhooks.policy import is_retryable, retry_after

log = logging.getLogger("watui.webhooks")

SERVER_SECRET_FILE = "webhook.secret"
ERROR_SNIPPET = 300
"""How much of a failed response's body the attempts log keeps (admins see it)."""
MAX_RESPONSE_BODY = 64 * 1024
"""A response body is read (so the connection can be reused) up to this much, then dropped."""


class MaskUrlPasswords(logging.Filter):
    """httpx logs every request's URL at INFO; a webhook URL may carry ``user:password@``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) and a.password for a in record.args):
            record.args = tuple(mask_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, MaskUrlPasswords) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(MaskUrlPasswords())


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def load_or_create_secret(path: Path) -> str:
    """The server-wide secret (for the default URL), created 0600 on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = new_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    try:
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    log.warning("created the server-wide webhook secret in %s", path)
    return secret


@dataclass
class Outcome:
    status_code: int | None = None
    error: str | None = None
    retryable: bool = True
    undeliverable: bool = False
    """Nothing about this row can ever be sent (a stored secret that cannot sign, a payload that
    cannot be encoded): it is dead-lettered at once, with the reason, instead of retried."""
    retry_after: float | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def body_of(due: Due, qr_data: str | None = None) -> str:
    """The event as the receiver gets it; a ``qr`` event's PNG (:func:`qr_data_of`) goes in as
    ``qr_data``, as on the SSE stream."""
    event = Event(
        id=due.event_id, type=EventType(due.event_type), session_id=due.session_id,
        owner=due.owner, timestamp=due.event_ts, payload=json.loads(due.payload),
    )
    data = event.data()
    body: dict[str, Any] = {"id": event.id, "type": event.type.value}
    body.update((k, v) for k, v in data.items() if k not in body)
    if event.type is EventType.MESSAGE and "type" in data:
        body["message_type"] = data["type"]  # ``type`` is the event's here: the message's is beside it
    if qr_data is not None:
        body["qr_data"] = qr_data
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)


async def qr_data_of(due: Due) -> str | None:
    """The PNG of a ``qr`` delivery's code, drawn now if nobody drew it yet (off the event loop,
    once for everyone asking). ``None`` once the code expired or a newer code of the session
    is known: a delivery late enough for that (a retry) carries ``qr_text`` alone."""
    payload = json.loads(due.payload)
    code = payload.get("qr_text") if isinstance(payload, dict) else None
    if not isinstance(code, str):
        return None
    return await drawings.data_url(code, session_id=due.session_id, order=due.event_id,
                                   expires_at=payload.get("expires_at"))


async def post(due: Due, client: httpx.AsyncClient, signer: Any, timeout: float) -> Outcome:
    """One attempt. ``signer`` is a :class:`Webhook` or a callable giving one (it may raise: a
    bad stored secret makes the row undeliverable rather than an endless retry)."""
    started = time.perf_counter()
    outcome = Outcome()
    try:
        qr_data = await qr_data_of(due) if due.event_type == EventType.QR.value else None
        body = body_of(due, qr_data)
        webhook: Webhook = signer() if callable(signer) else signer
        sent_at = datetime.fromtimestamp(int(time.time()), UTC)  # real time: receivers check it
        headers = {
            "webhook-id": due.webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": webhook.sign(due.webhook_id, sent_at, body),
        }
    except Exception as exc:
        log.warning("webhook delivery %s is undeliverable and is dead-lettered: %s: %s",
                    due.webhook_id, type(exc).__name__, exc)
        outcome.error = f"undeliverable: {type(exc).__name__}: {exc}"
        outcome.retryable, outcome.undeliverable = False, True
        outcome.error = outcome.error[:ERROR_SNIPPET]
        return outcome
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST", due.url, content=body.encode(), headers=headers, timeout=timeout
            ) as response:
                outcome.status_code = response.status_code
                head = await _read_some(response)
                if not outcome.ok:
                    outcome.retryable = is_retryable(response.status_code)
                    outcome.retry_after = retry_after(response.headers.get("retry-after"))
                    text = head[:ERROR_SNIPPET].decode(errors="replace").strip()
                    outcome.error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    except ForbiddenAddress as exc:
        outcome.error, outcome.retryable = str(exc), False
    except (TimeoutError, httpx.TimeoutException):
        outcome.error = f"timed out after {timeout:g} s"
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        outcome.error, outcome.retryable = f"{type(exc).__name__}: {exc}", False
    except httpx.TransportError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception as exc:  # a bug: dead-letter the row with its reason rather than loop on it
        log.exception("webhook delivery %s failed unexpectedly; dead-lettered", due.webhook_id)
        outcome.error = f"undeliverable: {type(exc).__name__}: {exc}"
        outcome.retryable, outcome.undeliverable = False, True
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    if outcome.error is not None:
        outcome.error = outcome.error[:ERROR_SNIPPET]
    return outcome


async def _read_some(response: httpx.Response) -> bytes:
    """Read the body so the keep-alive connection goes back to the pool (a response closed
    unread is a connection thrown away); past ``MAX_RESPONSE_BODY`` give up on it instead."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(httpx.HTTPError):
        async for part in response.aiter_bytes():
            if size < ERROR_SNIPPET:
                chunks.append(part)
            size += len(part)
            if size > MAX_RESPONSE_BODY:
                break
    return b"".join(chunks)
