"""What a send (or the simulated phone) brings as a file, made into a checked, staged file:
decoded from base64, fetched from its ``url`` or taken from a multipart upload; then held to
its type's size cap (:mod:`.limits`), sniffed (:mod:`.sniff`) and hashed."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from watui.config import Settings
from watui.media.errors import MediaInvalid
from watui.media.fetch import fetch_to_file
from watui.media.limits import check_size, max_bytes
from watui.media.sniff import HEAD_BYTES, check_content
from watui.media.storage import staging_dir
from watui.models import MediaInput
from watui.webhooks.guard import WebhookGuard


@dataclass(frozen=True, slots=True)
class Staged:
    """A checked file waiting in the staging directory (its owner deletes or stores it)."""

    path: Path
    mimetype: str
    size: int
    sha256: str
    filename: str | None = None


def staged_path(settings: Settings) -> Path:
    return staging_dir(settings.data_dir) / ("in_" + secrets.token_hex(12))


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as f:
        f.write(data)


def _decode_to(path: Path, data: str) -> None:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaInvalid("media.data is not valid base64", details={"field": "media.data"}) from None
    _write_new(path, raw)


def _inspect(path: Path) -> tuple[bytes, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        digest.update(head)
        while piece := f.read(1024 * 1024):
            digest.update(piece)
    return head, digest.hexdigest()


async def stage(
    settings: Settings, kind: str, media: MediaInput, *, upload: Path | None = None,
    upload_type: str | None = None,
) -> Staged:
    """``media`` (of a ``kind`` message) as a checked staged file. ``upload``: a multipart
    part already written to a staged file (taken over), with its part's ``upload_type``."""
    path = upload or staged_path(settings)
    declared = media.mimetype or upload_type
    try:
        if upload is None and media.data is not None:
            if len(media.data) * 3 // 4 > max_bytes(settings, kind) + 2:
                check_size(settings, kind, len(media.data) * 3 // 4)
            await asyncio.to_thread(_decode_to, path, media.data)
        elif upload is None and media.url is not None:
            await fetch_to_file(
                str(media.url), path, guard=WebhookGuard.from_settings(settings),
                timeout=settings.media_fetch_timeout, max_bytes=max_bytes(settings, kind),
            )
        elif upload is None:
            raise MediaInvalid("media needs data (base64), url or a multipart file",
                               details={"field": "media"})
        size = path.stat().st_size
        if size == 0:
            raise MediaInvalid("the media file is empty", details={"field": "media"})
        check_size(settings, kind, size)
        head, sha256 = await asyncio.to_thread(_inspect, path)
        mimetype = check_content(kind, head, declared)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path, mimetype, size, sha256, media.filename)
