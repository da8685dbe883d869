"""Media over HTTP: a send's body as JSON or ``multipart/form-data`` (a file part), and a
stored file served with ``Range`` (``206``/``416``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from watui.config import Settings
from watui.media.intake import staged_path
from watui.models import NO_NUL, MediaContent, SendMessage
from watui.server.openapi import PHONE_PATTERN

MEDIA_BODY_PATHS = re.compile(r"^/v1/sessions/[^/]+/(messages|simulate)$")
"""The POSTs whose body may carry a file (``WATUI_MEDIA_MAX_BODY_BYTES``)."""

MULTIPART_FIELDS = ("to", "type", "caption", "mimetype", "filename")

def _multipart(kinds: list[str], *, caption: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "to": {"type": "string", "description": "the recipient's phone number", "pattern": PHONE_PATTERN},
        "type": {"type": "string", "enum": kinds},
        "mimetype": {"type": "string", "maxLength": 255, "pattern": NO_NUL},
        "filename": {"type": "string", "maxLength": 255, "pattern": NO_NUL},
        "file": {"type": "string", "format": "binary"},
    }
    if caption:
        properties["caption"] = {"type": "string", "maxLength": 1024, "pattern": NO_NUL}
    return {"type": "object", "required": ["to", "type", "file"], "properties": properties,
            "additionalProperties": False}


SEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SendMessage"}},
            "multipart/form-data": {"schema": {"oneOf": [
                _multipart(["image", "video", "document"], caption=True),
                _multipart(["audio", "voice", "sticker"], caption=False),
            ]}},
        },
    },
}
"""The send's request body in the OpenAPI document: either form."""


def _invalid(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors(include_input=False)]
    )


async def send_body(request: Request, settings: Settings) -> tuple[SendMessage, Path | None, str | None]:
    """The send ``request`` asks for: its checked body, and the file part of a multipart one
    written to a staged file (with the part's content type)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raw = await request.body()
        try:
            return SendMessage.model_validate_json(raw or b"null", strict=True), None, None
        except ValidationError as exc:
            raise _invalid(exc) from None
    form = await request.form(max_files=1, max_fields=len(MULTIPART_FIELDS) + 1)
    upload: Path | None = None
    try:
        fields: dict[str, Any] = {}
        file: UploadFile | None = None
        text_file: str | None = None  # a part named file without a filename: a plain field
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "file":
                    raise _form_error(key, "the file goes in the part named file")
                file = value
            elif key == "file":
                text_file = value
            elif key not in MULTIPART_FIELDS:
                raise _form_error(key, f"unknown field (fields: {', '.join(MULTIPART_FIELDS)}, file)")
            elif value != "":  # an empty form field is one not given
                fields[key] = value
        if file is None and text_file is None:
            raise _form_error("file", "a multipart send needs its file in a part named file")
        upload = staged_path(settings)
        fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out:  # noqa: ASYNC230 - a new private file, written in 1 MiB pieces
            if file is None:
                out.write((text_file or "").encode())
            else:
                while piece := await file.read(1024 * 1024):
                    out.write(piece)
        media = {k: v for k, v in (("mimetype", fields.pop("mimetype", None)),
                                   ("filename", fields.pop("filename", None) or (file and file.filename)))
                 if v}
        try:
            body = SendMessage.model_validate({**fields, "media": media}, context={"upload": True})
        except ValidationError as exc:
            raise _invalid(exc) from None
        return body, upload, file.content_type if file is not None else None
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    finally:
        await form.close()


def _form_error(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def media_response(content: MediaContent, range_header: str | None) -> Response:
    """The file, whole (``200``) or the one range asked for (``206``); a range that starts
    past the end is ``416`` with ``Content-Range: bytes */size``. Several ranges, or one that
    cannot be read, get the whole file (RFC 9110 lets a server ignore Range)."""
    size = content.size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
    if content.filename:
        headers["Content-Disposition"] = "attachment; filename*=UTF-8''" + _quote(content.filename)
    start, end, status = 0, size - 1, 200
    match = _RANGE.match(range_header.strip()) if range_header else None
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:  # the last N bytes
            start, end = max(size - int(match[2]), 0), size - 1
        if start >= size or start > end or (not match[1] and int(match[2]) == 0):
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)

    async def body() -> AsyncIterator[bytes]:
        if size:
            async for piece in content.read(start, end):
                yield piece

    return StreamingResponse(body(), status_code=status, media_type=content.mimetype, headers=headers)


def _quote(name: str) -> str:
    return quote(name, safe="")
