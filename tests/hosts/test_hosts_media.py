"""Media through a crash-isolated engine host: the file of a send and of a received message
crosses the pipe as a path (MAX_FRAME is no limit on a file's size), and lands in the store."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from hosts_helpers import hosted, open_manager, wait_for

from watui.engines.hosts.wire import MAX_FRAME
from watui.machine import Status
from watui.media.storage import staging_dir
from watui.models import Caller, SendMessage, SessionCreate, SimulateRequest

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(1000)


async def read_all(admin: object, session_id: str, message_id: str) -> bytes:
    content = await admin.message_media(session_id, message_id)  # type: ignore[attr-defined]
    return b"".join([piece async for piece in content.read(0, content.size - 1)])


async def test_media_both_ways_through_a_host(tmp_path: Path) -> None:
    engine = hosted()
    manager = await open_manager(tmp_path, engine, media_max_document_bytes=64 * 1024 * 1024)
    admin = manager.service(Caller.local_admin())
    try:
        session = await admin.create_session(SessionCreate(name="hosted"))
        await wait_for(lambda: manager.registry.sessions[session.id].status is Status.QR_READY, "qr")
        await admin.simulate(session.id, SimulateRequest(action="scan"))
        await wait_for(lambda: manager.registry.sessions[session.id].status is Status.CONNECTED, "connected")
        # Larger than a frame may be: it can only cross as a path.
        big = b"%PDF-1.7\n" + os.urandom(MAX_FRAME + 1024)
        upload = staging_dir(manager.settings.data_dir) / "in_test"
        upload.write_bytes(big)
        sent = await admin.send(session.id, SendMessage.model_validate(
            {"to": "+14155550100", "type": "document", "media": {"filename": "big.pdf"}},
            context={"upload": True}), upload=upload)
        assert sent.media is not None and sent.media.size == len(big)
        assert sent.media.sha256 == hashlib.sha256(big).hexdigest()
        assert await read_all(admin, session.id, str(sent.id)) == big
        await admin.simulate(session.id, SimulateRequest.model_validate(
            {"action": "message", "type": "image", "caption": "from the phone",
             "media": {"data": base64.b64encode(JPEG).decode()}}))
        got = (await admin.list_messages(session.id)).messages[0]
        assert (got.type.value, got.caption, got.media and got.media.size) == ("image", "from the phone", len(JPEG))
        assert await read_all(admin, session.id, str(got.id)) == JPEG
    finally:
        await manager.aclose()
