"""Media messages in the manager: what a send or an incoming message carries beside its text
(a file, a location, a contact) as the engine, the store and the ``message`` event each need
it. The files themselves are kept by :mod:`watui.media.storage` (the journal's ``media``)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watui.engines.base import Contact, IncomingMessage, Location, MediaFile, Outgoing
from watui.media.errors import MediaNotFound
from watui.media.intake import Staged
from watui.media.storage import MediaStorage, media_root, new_media_id
from watui.models import (
    ContactInfo,
    ContactInput,
    LocationInfo,
    LocationInput,
    MediaContent,
    MediaInfo,
    MessageType,
    SendMessage,
    message_details,
)

if TYPE_CHECKING:
    from watui.stores.base import StoreProtocol

log = logging.getLogger(__name__)


def outgoing(request: SendMessage, staged: Staged | None) -> Outgoing:
    """The engine's message for ``request`` (its file, if any, already ``staged``)."""
    kind = request.type.value
    media = None
    if staged is not None:
        media = MediaFile(str(staged.path), staged.mimetype, staged.size, staged.filename)
    location, contact = engine_parts(request.location, request.contact)
    text = request.text if request.type is MessageType.TEXT else request.caption
    return Outgoing(kind, text or "", media, location, contact)


def engine_parts(
    location: LocationInput | LocationInfo | None, contact: ContactInput | ContactInfo | None,
) -> tuple[Location | None, Contact | None]:
    """A send's (or a stored message's) location and contact as the engine takes them."""
    return (
        Location(location.latitude, location.longitude, location.name, location.address)
        if location is not None else None,
        Contact(contact.name, contact.phone) if contact is not None else None,
    )


def media_info(media_id: str | None, staged: Staged) -> MediaInfo:
    return MediaInfo(id=media_id, mimetype=staged.mimetype, size=staged.size, sha256=staged.sha256,
                     filename=staged.filename)


def details_of(
    media: MediaInfo | None, location: Location | None, contact: Contact | None,
) -> tuple[str | None, dict[str, Any]]:
    """The store's ``details`` column and the event payload's fields for what a message
    carries beside its text (never the bytes)."""
    loc = LocationInfo(latitude=location.latitude, longitude=location.longitude, name=location.name,
                       address=location.address) if location is not None else None
    card = ContactInfo(name=contact.name, phone=contact.phone) if contact is not None else None
    payload: dict[str, Any] = {}
    if media is not None:
        payload["media"] = media.model_dump(mode="json", exclude_none=True) | {"id": media.id}
    if loc is not None:
        payload["location"] = loc.model_dump(mode="json", exclude_none=True)
    if card is not None:
        payload["contact"] = card.model_dump(mode="json")
    return message_details(media, loc, card), payload


async def keep(storage: MediaStorage | None, session_id: str, path: Path) -> str | None:
    """Hand the file at ``path`` to ``storage``; its media id (None: not kept, file gone)."""
    if storage is None:
        await discard(path)
        return None
    media_id = new_media_id()
    try:
        await storage.put(session_id, media_id, path)
    except Exception:
        log.warning("could not keep a media file of %s", session_id, exc_info=True)
        await discard(path)
        return None
    return media_id


async def discard(path: Path | str | None) -> None:
    if path:
        await asyncio.to_thread(Path(path).unlink, True)


async def received_media(
    storage: MediaStorage | None, session_id: str, event: IncomingMessage, *, history: bool,
) -> MediaInfo | None:
    """The descriptor of an incoming message's file, the downloaded bytes kept in ``storage``
    (with ``history`` off nothing is kept: no descriptor, the download deleted)."""
    media = event.media
    if media is None:
        return None
    if not history:
        await discard(media.path)
        return None
    media_id = await keep(storage, session_id, Path(media.path)) if media.path else None
    if media.error:
        log.info("a media file of %s was not downloaded: %s", session_id, media.error)
    return MediaInfo(id=media_id, mimetype=media.mimetype, size=media.size, sha256=media.sha256,
                     filename=media.filename)


async def delete_session(storage: MediaStorage | None, data_dir: Path, session_id: str) -> None:
    """A deleted session's files: those kept, and any download its engine left behind."""
    if storage is not None:
        try:
            await storage.delete_session(session_id)
        except Exception:
            log.warning("could not delete the media of %s", session_id, exc_info=True)
    downloads = media_root(data_dir) / session_id
    if session_id and "/" not in session_id:
        await asyncio.to_thread(shutil.rmtree, downloads, True)


async def media_content(
    storage: MediaStorage | None, store: StoreProtocol, session_id: str, message_ref: str,
) -> MediaContent:
    """The stored file of the message ``message_ref`` (watui's id, digits; or WhatsApp's)."""
    message = (await store.get_message(session_id, int(message_ref)) if message_ref.isdigit()
               else None) or await store.find_message(session_id, message_ref)
    if message is None:
        raise MediaNotFound(f"No message {message_ref!r} in this session",
                            details={"message_id": message_ref})
    info = message.media
    if info is None or info.id is None or storage is None:
        why = ("is not a media message" if info is None else
               "has no stored file (download_media was off, or the download failed)")
        raise MediaNotFound(f"Message {message_ref!r} {why}", details={"message_id": message_ref})
    size = await storage.size(session_id, info.id)
    if size is None:
        raise MediaNotFound(f"The file of message {message_ref!r} is no longer stored (media retention)",
                            details={"message_id": message_ref, "media_id": info.id})
    media_id = info.id

    def read(start: int, end: int) -> AsyncIterator[bytes]:
        return storage.read(session_id, media_id, start, end)

    return MediaContent(info.mimetype, size, info.filename, read)
