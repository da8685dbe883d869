"""The refusals of a media send or read (``{"error": {"code", "message", "details"}}``)."""

from __future__ import annotations

from watui.errors import WatuiError


class MediaTypeMismatch(WatuiError):
    """The content is not what the message's type (or the declared mimetype) says."""

    status = 422
    code = "MEDIA_TYPE_MISMATCH"


class MediaTooLarge(WatuiError):
    status = 422
    code = "MEDIA_TOO_LARGE"


class MediaInvalid(WatuiError):
    """The bytes cannot be read (base64 that does not decode, an empty file)."""

    status = 422
    code = "MEDIA_INVALID"


class MediaUrlForbidden(WatuiError):
    status = 422
    code = "MEDIA_URL_FORBIDDEN"


class MediaFetchFailed(WatuiError):
    status = 422
    code = "MEDIA_FETCH_FAILED"


class MediaNotFound(WatuiError):
    status = 404
    code = "MEDIA_NOT_FOUND"
