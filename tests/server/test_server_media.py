"""Media messages over real HTTP (a uvicorn on loopback, the simulated engine, SQLite): every
type sent and received, JSON and multipart sends, content sniffing, ``media.url`` under the
webhook address rules, the file served with ``Range``, retention and a size cap, a deleted
session's files, ``message_history`` off, and events that describe a file but never carry it."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from media_helpers import JPEG, MP3, MP4, OPUS, PDF, PNG, SAMPLES, b64, sha256
from server_helpers import api_client, decode, linked_session, read_until, serve_http

from watui.server import BackgroundServer

TO = "+14155550123"



@pytest.fixture
def media_server(start_server: Callable[..., BackgroundServer]) -> BackgroundServer:
    return start_server()


@pytest.fixture
def client(media_server: BackgroundServer) -> Iterator[httpx.Client]:
    with api_client(media_server.base_url, media_server.admin_key) as c:
        yield c


def stored_files(server: BackgroundServer, session_id: str) -> list[Path]:
    folder = server.settings.data_dir / "media" / "files" / session_id
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_each_media_type_is_sent_stored_and_served(
    kind: str, media_server: BackgroundServer, client: httpx.Client,
) -> None:
    data, mimetype = SAMPLES[kind]
    session_id = linked_session(client, "sender")
    body: dict[str, Any] = {"to": TO, "type": kind, "media": {"data": b64(data), "filename": f"f.{kind}"}}
    if kind in ("image", "video", "document"):
        body["caption"] = f"a {kind}"
    sent = client.post(f"/v1/sessions/{session_id}/messages", json=body)
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["type"] == kind and message["text"] == ""
    assert message["caption"] == body.get("caption")
    media = message["media"]
    assert media["mimetype"] == mimetype and media["size"] == len(data)
    assert media["sha256"] == sha256(data) and media["filename"] == f"f.{kind}"
    assert media["id"].startswith("med_")
    # What the recipient's phone got: the same bytes, as the type asked for.
    to, outgoing, digest = media_server.manager.engine.sent_messages[-1]
    assert (to, outgoing.type, digest, outgoing.text) == ("14155550123", kind, sha256(data), body.get("caption", ""))
    served = client.get(f"/v1/sessions/{session_id}/messages/{message['id']}/media")
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"].startswith(mimetype.split(";")[0])
    assert served.headers["content-length"] == str(len(data))
    by_whatsapp_id = client.get(f"/v1/sessions/{session_id}/messages/{message['message_id']}/media")
    assert by_whatsapp_id.content == data
    listed = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"][0]
    assert listed["type"] == kind and listed["media"] == media
    files = stored_files(media_server, session_id)
    assert [f.name for f in files] == [media["id"]]
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert not list((media_server.settings.data_dir / "media" / ".staging").glob("in_*"))


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_each_media_type_is_received_with_its_file(
    kind: str, media_server: BackgroundServer, client: httpx.Client,
) -> None:
    data, mimetype = SAMPLES[kind]
    session_id = linked_session(client, "receiver")
    body: dict[str, Any] = {"action": "message", "chat": TO, "type": kind,
                            "media": {"data": b64(data), "filename": "x.bin"}}
    if kind in ("image", "video", "document"):
        body["caption"] = "look"
    assert client.post(f"/v1/sessions/{session_id}/simulate", json=body).status_code == 200
    message = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"][0]
    assert (message["direction"], message["type"], message["caption"]) == ("in", kind, body.get("caption"))
    assert message["media"]["size"] == len(data) and message["media"]["sha256"] == sha256(data)
    assert message["media"]["mimetype"] == mimetype
    served = client.get(f"/v1/sessions/{session_id}/messages/{message['id']}/media")
    assert served.status_code == 200 and served.content == data
    assert [f.name for f in stored_files(media_server, session_id)] == [message["media"]["id"]]
    # The engine's download was moved into the store, not copied.
    assert not any((media_server.settings.data_dir / "media" / session_id).glob("*"))


def test_location_and_contact_both_ways(client: httpx.Client) -> None:
    session_id = linked_session(client, "places")
    where = {"latitude": 52.52, "longitude": 13.405, "name": "Berlin", "address": "Mitte"}
    sent = client.post(f"/v1/sessions/{session_id}/messages", json={"to": TO, "type": "location", "location": where})
    assert sent.status_code == 201, sent.text
    assert (sent.json()["type"], sent.json()["location"], sent.json()["media"]) == ("location", where, None)
    card = client.post(f"/v1/sessions/{session_id}/messages",
                       json={"to": TO, "type": "contact", "contact": {"name": "Ana", "phone": "+49 151 1234567"}})
    assert card.status_code == 201, card.text
    assert card.json()["contact"] == {"name": "Ana", "phone": "491511234567"}
    for body in ({"type": "location", "location": {"latitude": -33.9, "longitude": 151.2}},
                 {"type": "contact", "contact": {"name": "Bo", "phone": "+14155550100"}}):
        got = client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "message", "chat": TO, **body})
        assert got.status_code == 200, got.text
    messages = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    assert [(m["direction"], m["type"]) for m in messages] == [
        ("in", "contact"), ("in", "location"), ("out", "contact"), ("out", "location")]
    assert messages[0]["contact"] == {"name": "Bo", "phone": "14155550100"}
    assert messages[1]["location"] == {"latitude": -33.9, "longitude": 151.2, "name": None, "address": None}
    none = client.get(f"/v1/sessions/{session_id}/messages/{messages[0]['id']}/media")
    assert none.status_code == 404 and none.json()["error"]["code"] == "MEDIA_NOT_FOUND"


def test_multipart_send_of_a_large_file(media_server: BackgroundServer, client: httpx.Client) -> None:
    session_id = linked_session(client, "big")
    video = MP4 + bytes(3 * 1024 * 1024)  # past the 64 KiB JSON body limit
    sent = client.post(f"/v1/sessions/{session_id}/messages",
                       data={"to": TO, "type": "video", "caption": "big one"},
                       files={"file": ("clip.mp4", video, "video/mp4")})
    assert sent.status_code == 201, sent.text
    media = sent.json()["media"]
    assert (media["size"], media["sha256"], media["filename"], media["mimetype"]) == (
        len(video), sha256(video), "clip.mp4", "video/mp4")
    assert sent.json()["caption"] == "big one"
    assert client.get(f"/v1/sessions/{session_id}/messages/{sent.json()['id']}/media").content == video
    # A client that cannot name the file's type (curl's application/octet-stream) need not.
    voice = client.post(f"/v1/sessions/{session_id}/messages", data={"to": TO, "type": "voice"},
                        files={"file": ("note.opus", OPUS, "application/octet-stream")})
    assert voice.status_code == 201, voice.text
    assert voice.json()["media"]["mimetype"] == "audio/ogg; codecs=opus"
    # The multipart form is held to the same rules: a file part is required, and sniffed.
    missing = client.post(f"/v1/sessions/{session_id}/messages", data={"to": TO, "type": "video"},
                          files={"other": ("x", b"abc", "text/plain")})
    assert missing.status_code == 422
    wrong = client.post(f"/v1/sessions/{session_id}/messages", data={"to": TO, "type": "image"},
                        files={"file": ("x.jpg", PDF, "image/jpeg")})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "MEDIA_TYPE_MISMATCH"
    assert not list((media_server.settings.data_dir / "media" / ".staging").glob("in_*"))


@pytest.mark.parametrize(("kind", "data", "declared", "why"), [
    ("image", PDF, None, "application/pdf"),
    ("image", JPEG, "image/png", "image/jpeg"),
    ("voice", MP3, None, "opus"),
    ("sticker", PNG, None, "image/png"),
    ("document", PDF, "application/msword", "application/pdf"),
    ("audio", OPUS, "audio/mpeg", "audio/ogg"),
], ids=["pdf-as-image", "jpeg-as-png", "mp3-as-voice", "png-as-sticker", "pdf-as-word", "opus-as-mp3"])
def test_content_that_is_not_what_is_declared_is_422(
    kind: str, data: bytes, declared: str | None, why: str, media_server: BackgroundServer,
    client: httpx.Client,
) -> None:
    session_id = linked_session(client, "sniff")
    media: dict[str, Any] = {"data": b64(data)}
    if declared:
        media["mimetype"] = declared
    answer = client.post(f"/v1/sessions/{session_id}/messages", json={"to": TO, "type": kind, "media": media})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "MEDIA_TYPE_MISMATCH" and why in error["message"]
    assert client.get(f"/v1/sessions/{session_id}/messages").json()["total"] == 0
    assert media_server.manager.engine.sent_messages == type(media_server.manager.engine.sent_messages)()


def test_validation_of_types_and_size_caps(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(media_max_image_bytes=1000)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "caps")
        url = f"/v1/sessions/{session_id}/messages"
        for body in ({"to": TO, "type": "image"},  # no media
                     {"to": TO, "type": "text"},  # no text
                     {"to": TO, "type": "audio", "media": {"data": b64(MP3)}, "caption": "no captions"},
                     {"to": TO, "type": "image", "media": {"data": b64(JPEG), "url": "https://e.com/x"}},
                     {"to": TO, "type": "location", "location": {"latitude": 91, "longitude": 0}},
                     {"to": TO, "text": "hi", "media": {"data": b64(JPEG)}}):
            answer = client.post(url, json=body)
            assert answer.status_code == 422 and answer.json()["error"]["code"] == "VALIDATION_ERROR", body
        big = client.post(url, json={"to": TO, "type": "image", "media": {"data": b64(JPEG)}})
        assert big.status_code == 422 and big.json()["error"]["code"] == "MEDIA_TOO_LARGE"
        assert big.json()["error"]["details"]["max_bytes"] == 1000
        bad = client.post(url, json={"to": TO, "type": "document", "media": {"data": "not base64!"}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "MEDIA_INVALID"
        assert client.post(url, json={"to": TO, "text": "plain text still works"}).status_code == 201


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PNG if self.path == "/pic.png" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    with serve_http(_Files) as url:
        yield url


def test_media_url_is_refused_on_loopback_unless_allowed(
    start_server: Callable[..., BackgroundServer], file_server: str,
) -> None:
    guarded = start_server(webhook_allow_private=False)
    with api_client(guarded.base_url, guarded.admin_key) as client:
        session_id = linked_session(client, "guarded")
        answer = client.post(f"/v1/sessions/{session_id}/messages",
                             json={"to": TO, "type": "image", "media": {"url": f"{file_server}/pic.png"}})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "MEDIA_URL_FORBIDDEN"
        assert "loopback" in answer.json()["error"]["message"]
    allowed = start_server(webhook_allow_private=False, webhook_allowed_hosts=["127.0.0.1"])
    with api_client(allowed.base_url, allowed.admin_key) as client:
        session_id = linked_session(client, "allowed")
        sent = client.post(f"/v1/sessions/{session_id}/messages",
                           json={"to": TO, "type": "image", "media": {"url": f"{file_server}/pic.png"}})
        assert sent.status_code == 201, sent.text
        assert sent.json()["media"]["sha256"] == sha256(PNG)
        missing = client.post(f"/v1/sessions/{session_id}/messages",
                              json={"to": TO, "type": "image", "media": {"url": f"{file_server}/nothing"}})
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "MEDIA_FETCH_FAILED"


def test_range_requests(client: httpx.Client) -> None:
    session_id = linked_session(client, "ranges")
    sent = client.post(f"/v1/sessions/{session_id}/messages",
                       json={"to": TO, "type": "document", "media": {"data": b64(PDF), "filename": "r.pdf"}})
    url = f"/v1/sessions/{session_id}/messages/{sent.json()['id']}/media"
    size = len(PDF)
    part = client.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == PDF[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{size}" and part.headers["content-length"] == "90"
    tail = client.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == PDF[-16:]
    rest = client.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert rest.content == PDF[-5:] and rest.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    past = client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert "r.pdf" in whole.headers["content-disposition"]


def test_media_is_owner_scoped(media_server: BackgroundServer, client: httpx.Client) -> None:
    session_id = linked_session(client, "mine")
    sent = client.post(f"/v1/sessions/{session_id}/messages",
                       json={"to": TO, "type": "image", "media": {"data": b64(JPEG)}}).json()
    other_key = media_server.create_key("someone-else")
    with api_client(media_server.base_url, other_key) as other:
        answer = other.get(f"/v1/sessions/{session_id}/messages/{sent['id']}/media")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "SESSION_NOT_FOUND"


def test_retention_and_the_size_cap_delete_the_oldest_files(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(media_max_total_bytes=2 * len(PDF) + 10)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "kept")
        ids = []
        for _ in range(4):
            sent = client.post(f"/v1/sessions/{session_id}/messages",
                               json={"to": TO, "type": "document", "media": {"data": b64(PDF)}})
            ids.append(sent.json()["id"])
        retention = server.manager.retention
        assert retention is not None
        pruned = server.call(retention.prune)
        assert (pruned.media_files, pruned.media_bytes) == (2, 2 * len(PDF))
        codes = [client.get(f"/v1/sessions/{session_id}/messages/{i}/media").status_code for i in ids]
        assert codes == [404, 404, 200, 200]
        gone = client.get(f"/v1/sessions/{session_id}/messages/{ids[0]}/media").json()["error"]
        assert gone["code"] == "MEDIA_NOT_FOUND" and "retention" in gone["message"]
        # Past the retention period every file goes; the messages stay.
        retention.settings = retention.settings.model_copy(update={"media_retention_days": 1e-9})
        assert server.call(retention.prune).media_files == 2
        assert stored_files(server, session_id) == []
        assert client.get(f"/v1/sessions/{session_id}/messages").json()["total"] == 4


def test_deleting_a_session_deletes_its_media(media_server: BackgroundServer, client: httpx.Client) -> None:
    session_id = linked_session(client, "doomed")
    keep_id = linked_session(client, "kept")
    for sid in (session_id, keep_id):
        client.post(f"/v1/sessions/{sid}/messages", json={"to": TO, "type": "image", "media": {"data": b64(JPEG)}})
        client.post(f"/v1/sessions/{sid}/simulate",
                    json={"action": "message", "type": "sticker", "media": {"data": b64(SAMPLES['sticker'][0])}})
    assert len(stored_files(media_server, session_id)) == 2
    assert client.delete(f"/v1/sessions/{session_id}").status_code == 204
    assert stored_files(media_server, session_id) == []
    assert not (media_server.settings.data_dir / "media" / "files" / session_id).exists()
    assert len(stored_files(media_server, keep_id)) == 2


def test_history_off_keeps_no_media(media_server: BackgroundServer, client: httpx.Client) -> None:
    session_id = linked_session(client, "quiet", message_history=False)
    sent = client.post(f"/v1/sessions/{session_id}/messages",
                       json={"to": TO, "type": "image", "caption": "secret caption", "media": {"data": b64(JPEG)}})
    assert sent.status_code == 201, sent.text
    assert (sent.json()["type"], sent.json()["media"], sent.json()["caption"]) == ("image", None, None)
    client.post(f"/v1/sessions/{session_id}/simulate",
                json={"action": "message", "type": "voice", "media": {"data": b64(OPUS)}})
    messages = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
    assert [(m["type"], m["media"]) for m in messages] == [("voice", None), ("image", None)]
    assert stored_files(media_server, session_id) == []
    # No download left behind either.
    assert [p for p in (media_server.settings.data_dir / "media").rglob("*") if p.is_file()] == []
    stats = client.get(f"/v1/sessions/{session_id}/stats").json()
    assert stats["by_type"] == {"image": 1, "voice": 1}


def test_download_media_off_keeps_the_descriptor_without_a_file(
    media_server: BackgroundServer, client: httpx.Client,
) -> None:
    session_id = linked_session(client, "nodl", download_media=False)
    client.post(f"/v1/sessions/{session_id}/simulate",
                json={"action": "message", "type": "image", "media": {"data": b64(JPEG)}})
    message = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"][0]
    assert message["media"]["id"] is None and message["media"]["sha256"] == sha256(JPEG)
    answer = client.get(f"/v1/sessions/{session_id}/messages/{message['id']}/media")
    assert answer.status_code == 404 and "download_media" in answer.json()["error"]["message"]


def test_events_and_stats_describe_files_but_never_carry_them(
    media_server: BackgroundServer, client: httpx.Client,
) -> None:
    session_id = linked_session(client, "events")
    seen: list[dict[str, Any]] = []
    big = MP4 + bytes(200_000)

    def collect() -> None:
        with api_client(media_server.base_url, media_server.admin_key) as reader:
            read_until(reader, "/v1/events", lambda e: len(seen) == 2,
                       headers={"Last-Event-ID": "0"},  # from the start: nothing can be missed
                       on_event=lambda e: seen.append(decode(e)) if e.event == "message" else None)

    reader = threading.Thread(target=collect)
    reader.start()
    client.post(f"/v1/sessions/{session_id}/messages",
                data={"to": TO, "type": "video"}, files={"file": ("v.mp4", big, "video/mp4")})
    client.post(f"/v1/sessions/{session_id}/simulate",
                json={"action": "message", "type": "document", "caption": "doc",
                      "media": {"data": b64(PDF), "filename": "a.pdf"}})
    reader.join(timeout=30)
    assert [(e["direction"], e["type"]) for e in seen] == [("out", "video"), ("in", "document")]
    for event, data in zip(seen, (big, PDF), strict=True):
        assert event["media"]["sha256"] == sha256(data) and event["media"]["size"] == len(data)
        assert len(json.dumps(event)) < 1000  # a descriptor, never the bytes
        assert set(event["media"]) <= {"id", "mimetype", "size", "sha256", "filename"}
    assert seen[1]["caption"] == "doc" and seen[1]["media"]["filename"] == "a.pdf"
    stats = client.get(f"/v1/sessions/{session_id}/stats").json()
    assert stats["by_type"] == {"video": 1, "document": 1}


def test_the_remote_service_sends_and_fetches_media(media_server: BackgroundServer, tmp_path: Path) -> None:
    from watui.models import SendMessage
    from watui.remote.service import RemoteService

    with api_client(media_server.base_url, media_server.admin_key) as client:
        session_id = linked_session(client, "remote")

    async def run() -> None:
        service = await RemoteService.open(media_server.base_url, media_server.admin_key)
        try:
            upload = tmp_path / "upload.bin"
            upload.write_bytes(MP3)
            sent = await service.send(session_id, SendMessage.model_validate(
                {"to": TO, "type": "audio", "media": {"filename": "song.mp3"}}, context={"upload": True}),
                upload=upload, upload_type="audio/mpeg")
            assert sent.media is not None and sent.media.sha256 == sha256(MP3)
            assert not upload.exists()  # taken over
            json_sent = await service.send(session_id, SendMessage.model_validate(
                {"to": TO, "type": "image", "caption": "hi", "media": {"data": b64(JPEG)}}))
            content = await service.message_media(session_id, str(sent.id))
            assert (content.mimetype, content.size, content.filename) == ("audio/mpeg", len(MP3), "song.mp3")
            got = b"".join([piece async for piece in content.read(0, content.size - 1)])
            assert got == MP3
            part = b"".join([piece async for piece in (await service.message_media(
                session_id, str(json_sent.id))).read(5, 9)])
            assert part == JPEG[5:10]
        finally:
            await service.aclose()

    asyncio.run(run())


def test_in_cluster_mode_files_live_in_postgresql(
    start_server: Callable[..., BackgroundServer], fresh_pg_database: str,
) -> None:
    server = start_server(database_url=fresh_pg_database)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "clustered")
        video = MP4 + bytes(2 * 1024 * 1024 + 99)  # three chunks
        sent = client.post(f"/v1/sessions/{session_id}/messages",
                           data={"to": TO, "type": "video"}, files={"file": ("v.mp4", video, "video/mp4")})
        assert sent.status_code == 201, sent.text
        client.post(f"/v1/sessions/{session_id}/simulate",
                    json={"action": "message", "type": "image", "media": {"data": b64(JPEG)}})
        messages = client.get(f"/v1/sessions/{session_id}/messages").json()["messages"]
        url = f"/v1/sessions/{session_id}/messages/{{}}/media"
        assert client.get(url.format(messages[0]["id"])).content == JPEG
        part = client.get(url.format(sent.json()["id"]), headers={"Range": "bytes=1048570-2097160"})
        assert part.status_code == 206 and part.content == video[1048570:2097161]
        # Nothing under the node's data dir: any node can serve these.
        assert [p for p in (server.settings.data_dir / "media").rglob("*") if p.is_file()] == []
        store = server.manager.store
        rows = server.call(lambda: store.fetchall("SELECT COUNT(*), SUM(size) FROM media"))
        assert (rows[0][0], rows[0][1]) == (2, len(video) + len(JPEG))
        assert client.delete(f"/v1/sessions/{session_id}").status_code == 204
        rows = server.call(lambda: store.fetchall("SELECT (SELECT COUNT(*) FROM media), (SELECT COUNT(*) FROM media_chunks)"))
        assert tuple(rows[0]) == (0, 0)


def test_files_a_crash_left_in_staging_are_cleaned_up(tmp_path: Path) -> None:
    from watui.media.storage import clean_staging, staging_dir

    old, fresh = staging_dir(tmp_path) / "in_old", staging_dir(tmp_path) / "in_new"
    download = tmp_path / "media" / "ses_x" / "dl_old"
    download.parent.mkdir(parents=True)
    for path in (old, fresh, download):
        path.write_bytes(b"x")
    for path in (old, download):
        os.utime(path, (1, 1))
    assert clean_staging(tmp_path, older_than=3600) == 2
    assert [p.exists() for p in (old, fresh, download)] == [False, True, False]


def test_webhooks_describe_files_but_never_carry_them(media_server: BackgroundServer, client: httpx.Client) -> None:
    bodies: list[dict[str, Any]] = []
    arrived = threading.Event()

    def receive(request: httpx.Request) -> httpx.Response:  # what the receiver would be sent, byte for byte
        body = json.loads(request.content)
        if body.get("type") == "message":
            bodies.append(body)
            if len(bodies) == 2:
                arrived.set()
        return httpx.Response(204)

    assert media_server.manager.webhooks is not None
    media_server.manager.webhooks._transport = httpx.MockTransport(receive)
    session_id = linked_session(client, "hooked", webhook_url="http://127.0.0.1:9/hook")
    big = PDF + bytes(300_000)
    client.post(f"/v1/sessions/{session_id}/messages",
                json={"to": TO, "type": "document", "media": {"data": b64(big), "filename": "big.pdf"}})
    client.post(f"/v1/sessions/{session_id}/simulate",
                json={"action": "message", "type": "voice", "media": {"data": b64(OPUS)}})
    assert arrived.wait(30), bodies
    payloads = sorted(bodies, key=lambda d: d["direction"])
    assert [(d["direction"], d["message_type"], d["media"]["size"]) for d in payloads] == [
        ("in", "voice", len(OPUS)), ("out", "document", len(big))]
    assert all(len(json.dumps(b)) < 1500 for b in bodies)  # the descriptor, not the bytes
    assert b64(OPUS)[:40] not in json.dumps(bodies)


def test_a_chunked_upload_past_the_cap_is_413_and_leaves_nothing(
    start_server: Callable[..., BackgroundServer],
) -> None:
    """No Content-Length (chunked), so the cap is found while the body streams in: the
    answer is still 413 PAYLOAD_TOO_LARGE, and no staged file is left behind."""
    server = start_server(media_max_body_bytes=64 * 1024)
    boundary = "b0undary"

    def body(size: int) -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{TO}\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ndocument\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
               "Content-Type: application/pdf\r\n\r\n").encode()
        yield PDF[:4096]
        for _ in range(size // 4096):
            yield b"\0" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    with api_client(server.base_url, server.admin_key) as client:
        session_id = linked_session(client, "chunky")
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        for route in ("messages", "simulate"):
            answer = client.post(f"/v1/sessions/{session_id}/{route}", content=body(200 * 1024), headers=headers)
            assert answer.status_code == 413, (route, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "PAYLOAD_TOO_LARGE" and error["details"]["max_body_bytes"] == 64 * 1024
        # Under the cap the same upload goes.
        answer = client.post(f"/v1/sessions/{session_id}/messages", content=body(8 * 1024), headers=headers)
        assert answer.status_code == 201, answer.text
        assert client.get("/v1/health").json()["status"] == "ok"
    assert not list((server.settings.data_dir / "media" / ".staging").glob("in_*"))
