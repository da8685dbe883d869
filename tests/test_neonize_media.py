"""Messages of every type through the neonize adapter, fed with neonize's own protobufs.

Incoming: one test per type, each a ``Message`` event built from whatsmeow's E2E protos,
serialised and parsed back the way neonize's callback does. Downloads: the run's callback
driven from another thread with those bytes, the client's ``download_any`` answering (or
failing) as neonize's would. Outgoing: the protos :func:`assemble` makes from an
``UploadResponse`` (what neonize's ``upload`` answers), and :func:`build_outgoing` handing
the file's bytes to ``upload`` with the media type the recipient decrypts it as.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import io
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from neonize.events import EVENT_TO_INT
from neonize.exc import DownloadError
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContactMessage,
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    LocationMessage,
    StickerMessage,
    VideoMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as E2EMessage
from neonize.utils.enum import MediaType
from test_neonize_engine import ME, Recorder, complete, wire

from watui.engines.base import (
    Contact,
    IncomingMessage,
    Location,
    MediaFile,
    Outgoing,
    PairSuccess,
    ReceivedMedia,
    SessionConnected,
    SessionOptions,
)
from watui.engines.neonize import NeonizeEngine, NeonizeEngineError
from watui.engines.neonize.mapping import map_event
from watui.engines.neonize.media import (
    VOICE_MIMETYPE,
    assemble,
    build_outgoing,
    incoming_content,
    media_seconds,
    vcard,
    vcard_phone,
)
from watui.engines.neonize.run import _Run

SHA = hashlib.sha256(b"the file").digest()
PHONE = "4917000000001"


def _incoming(body: E2EMessage, msg_id: str = "3EB0MEDIA") -> IncomingMessage:
    event = wire(
        pb.Message(
            Info=pb.MessageInfo(
                ID=msg_id,
                Pushname="Bob",
                Timestamp=1_700_000_000_000,
                MessageSource=pb.MessageSource(
                    Chat=pb.JID(User=PHONE, Server="s.whatsapp.net"),
                    Sender=pb.JID(User=PHONE, Server="s.whatsapp.net"),
                ),
            ),
            Message=body,
        )
    )
    mapped = map_event(event)
    assert isinstance(mapped, IncomingMessage), mapped
    assert mapped.chat == PHONE and mapped.message_id == msg_id
    return mapped


# --------------------------------------------------------------------------- incoming, by type


def test_an_image_with_its_caption_and_file() -> None:
    got = _incoming(E2EMessage(imageMessage=ImageMessage(
        caption="a cat", mimetype="image/jpeg", fileLength=48213, fileSHA256=SHA,
        URL="https://mmg.whatsapp.net/x", mediaKey=b"k" * 32, directPath="/v/t62/x")))
    assert (got.type, got.text) == ("image", "a cat")
    assert got.media == ReceivedMedia(mimetype="image/jpeg", size=48213, sha256=SHA.hex())
    assert got.location is None and got.contact is None


def test_an_image_without_a_caption_is_still_a_message() -> None:
    got = _incoming(E2EMessage(imageMessage=ImageMessage(mimetype="image/png", fileLength=9)))
    assert (got.type, got.text) == ("image", "")
    assert got.media is not None and got.media.sha256 == "" and got.media.size == 9


def test_a_video() -> None:
    got = _incoming(E2EMessage(videoMessage=VideoMessage(
        caption="look", mimetype="video/mp4", fileLength=1_234_567, fileSHA256=SHA, seconds=12)))
    assert (got.type, got.text) == ("video", "look")
    assert got.media == ReceivedMedia(mimetype="video/mp4", size=1_234_567, sha256=SHA.hex())


def test_an_audio_file() -> None:
    got = _incoming(E2EMessage(audioMessage=AudioMessage(
        mimetype="audio/mpeg", fileLength=3000, fileSHA256=SHA, PTT=False)))
    assert (got.type, got.text) == ("audio", "")
    assert got.media == ReceivedMedia(mimetype="audio/mpeg", size=3000, sha256=SHA.hex())


def test_a_voice_note_is_an_audio_with_ptt() -> None:
    got = _incoming(E2EMessage(audioMessage=AudioMessage(
        mimetype=VOICE_MIMETYPE, fileLength=5120, fileSHA256=SHA, PTT=True, seconds=4)))
    assert got.type == "voice"
    assert got.media == ReceivedMedia(mimetype=VOICE_MIMETYPE, size=5120, sha256=SHA.hex())


def test_a_document_with_its_file_name_and_caption() -> None:
    got = _incoming(E2EMessage(documentMessage=DocumentMessage(
        mimetype="application/pdf", fileLength=777, fileSHA256=SHA, fileName="invoice.pdf",
        title="invoice.pdf", caption="March")))
    assert (got.type, got.text) == ("document", "March")
    assert got.media == ReceivedMedia(
        mimetype="application/pdf", size=777, sha256=SHA.hex(), filename="invoice.pdf")


def test_a_sticker() -> None:
    got = _incoming(E2EMessage(stickerMessage=StickerMessage(
        mimetype="image/webp", fileLength=20480, fileSHA256=SHA, isAnimated=False)))
    assert (got.type, got.text) == ("sticker", "")
    assert got.media == ReceivedMedia(mimetype="image/webp", size=20480, sha256=SHA.hex())


def test_a_location() -> None:
    got = _incoming(E2EMessage(locationMessage=LocationMessage(
        degreesLatitude=52.5163, degreesLongitude=13.3777, name="Brandenburger Tor",
        address="Pariser Platz, Berlin")))
    assert got.type == "location" and got.text == "" and got.media is None
    assert got.location == Location(52.5163, 13.3777, "Brandenburger Tor", "Pariser Platz, Berlin")
    bare = _incoming(E2EMessage(locationMessage=LocationMessage(degreesLatitude=-33.9, degreesLongitude=18.4)))
    assert bare.location == Location(-33.9, 18.4, None, None)


def test_a_contact_takes_its_number_from_the_vcards_waid() -> None:
    card = ("BEGIN:VCARD\nVERSION:3.0\nN:;Ada;;;\nFN:Ada Lovelace\n"
            "item1.TEL;waid=4915112345678:+49 151 12345678\nitem1.X-ABLabel:Mobile\nEND:VCARD")
    got = _incoming(E2EMessage(contactMessage=ContactMessage(displayName="Ada", vcard=card)))
    assert got.type == "contact" and got.media is None
    assert got.contact == Contact(name="Ada", phone="4915112345678")


def test_a_contact_without_waid_takes_its_tel_and_its_fn() -> None:
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bob Builder\r\nTEL;type=CELL:+1 (415) 555-0123\r\nEND:VCARD"
    got = _incoming(E2EMessage(contactMessage=ContactMessage(vcard=card)))
    assert got.contact == Contact(name="Bob Builder", phone="14155550123")
    assert vcard_phone("BEGIN:VCARD\nFN:x\nEND:VCARD") == ""


def test_extended_text_stays_text() -> None:
    got = _incoming(E2EMessage(extendedTextMessage=ExtendedTextMessage(text="see https://x.y")))
    assert (got.type, got.text, got.media) == ("text", "see https://x.y", None)


def test_wrapped_messages_are_opened() -> None:
    image = E2EMessage(imageMessage=ImageMessage(caption="once", mimetype="image/jpeg", fileLength=5))
    view_once = E2EMessage(viewOnceMessageV2=FutureProofMessage(message=image))
    got = _incoming(E2EMessage(ephemeralMessage=FutureProofMessage(message=view_once)))
    assert (got.type, got.text) == ("image", "once")
    doc = E2EMessage(documentMessage=DocumentMessage(caption="cv", fileName="cv.pdf", mimetype="application/pdf"))
    wrapped = _incoming(E2EMessage(documentWithCaptionMessage=FutureProofMessage(message=doc)))
    assert (wrapped.type, wrapped.text) == ("document", "cv")
    text = _incoming(E2EMessage(ephemeralMessage=FutureProofMessage(message=E2EMessage(conversation="hi"))))
    assert (text.type, text.text) == ("text", "hi")


def test_other_kinds_are_not_chat_messages() -> None:
    assert incoming_content(E2EMessage()) is None
    assert incoming_content(E2EMessage(reactionMessage={"text": "👍"})) is None


# --------------------------------------------------------------------------- downloads


class FakeApi:
    """neonize's client as the run calls it for a download: ``download_any`` answers with
    the bytes (or raises neonize's ``DownloadError``), and records what it was given."""

    def __init__(self, data: bytes | None = None, error: str | None = None) -> None:
        self.data, self.error = data, error
        self.asked: list[E2EMessage] = []

    def download_any(self, message: E2EMessage) -> bytes:
        self.asked.append(message)
        if self.error is not None:
            raise DownloadError(self.error)
        assert self.data is not None
        return self.data


def _run(tmp_path: Path, api: FakeApi, options: SessionOptions | None) -> tuple[_Run, Recorder]:
    engine = NeonizeEngine()
    report = Recorder()
    session = engine.session("dl", report, auth_path=tmp_path / "dl.db", options=options)
    run = _Run(session, asyncio.get_running_loop(), new_device=False, options=session.options)
    run._api = api  # type: ignore[assignment]  # the Go client, as far as a download goes
    return run, report


def _feed(run: _Run, *events: Any) -> None:
    """Call the run's event callback from another thread, with the bytes Go would pass."""
    keep = []

    def go_side() -> None:
        for event in events:
            data = complete(event).SerializeToString()
            buf = ctypes.create_string_buffer(data, len(data))
            keep.append(buf)
            code = 0 if isinstance(event, pb.Device) else EVENT_TO_INT[type(event)]
            run._on_event(0, ctypes.addressof(buf), len(data), code)

    worker = threading.Thread(target=go_side)
    worker.start()
    worker.join()


def _image_event(msg_id: str, *, wrapped: bool = False) -> Any:
    image = E2EMessage(imageMessage=ImageMessage(
        caption="a cat", mimetype="image/jpeg", fileLength=99, fileSHA256=SHA, mediaKey=b"k" * 32))
    body = E2EMessage(viewOnceMessage=FutureProofMessage(message=image)) if wrapped else image
    return pb.Message(
        Info=pb.MessageInfo(ID=msg_id, Timestamp=1_700_000_000_000, MessageSource=pb.MessageSource(
            Chat=pb.JID(User=PHONE, Server="s.whatsapp.net"),
            Sender=pb.JID(User=PHONE, Server="s.whatsapp.net"))),
        Message=body,
    )


async def test_received_media_is_downloaded_to_a_private_file(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    api = FakeApi(data=b"\xff\xd8\xff jpeg bytes")
    run, report = _run(tmp_path, api, SessionOptions(download_media=True, media_dir=str(media_dir)))
    await asyncio.to_thread(_feed, run, ME, _image_event("3EB0../../x", wrapped=True),
                            pb.Message(Info=_image_event("3EB0TXT").Info, Message=E2EMessage(conversation="after")))
    first, second = await report.next(), await report.next()
    assert isinstance(first, IncomingMessage) and first.type == "image" and first.text == "a cat"
    assert first.media is not None and first.media.error is None and first.media.path is not None
    path = Path(first.media.path)
    saved, mode = await asyncio.to_thread(lambda: (path.read_bytes(), path.stat().st_mode))
    assert path.parent == media_dir and saved == b"\xff\xd8\xff jpeg bytes"
    assert path.suffix == ".jpg" and ".." not in path.name
    assert stat.S_IMODE(mode) == 0o600
    assert first.media.size == len(b"\xff\xd8\xff jpeg bytes") and first.media.sha256 == SHA.hex()
    # neonize was asked for the image message itself, out of its view-once wrapper.
    assert len(api.asked) == 1 and api.asked[0].imageMessage.caption == "a cat"
    assert isinstance(second, IncomingMessage) and second.text == "after"  # in order


async def test_a_failed_download_still_reports_the_message(tmp_path: Path) -> None:
    api = FakeApi(error="failed to download: 404 Not Found")
    run, report = _run(tmp_path, api, SessionOptions(download_media=True, media_dir=str(tmp_path / "m")))
    await asyncio.to_thread(_feed, run, _image_event("3EB0GONE"))
    got = await report.next()
    assert isinstance(got, IncomingMessage) and got.message_id == "3EB0GONE" and got.type == "image"
    assert got.media is not None and got.media.path is None
    assert got.media.error == "download failed: failed to download: 404 Not Found"
    assert got.media.size == 99  # what the message declared
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


async def test_a_session_that_keeps_no_media_downloads_nothing(tmp_path: Path) -> None:
    api = FakeApi(data=b"x")
    run, report = _run(tmp_path, api, SessionOptions(download_media=False, media_dir=str(tmp_path / "m")))
    await asyncio.to_thread(_feed, run, _image_event("3EB0KEEP"))
    got = await report.next()
    assert isinstance(got, IncomingMessage) and got.media is not None
    assert got.media.path is None and got.media.error is None and api.asked == []
    default, report2 = _run(tmp_path, api, None)  # no options: the engine's default (none kept)
    await asyncio.to_thread(_feed, default, _image_event("3EB0DEF"))
    assert isinstance(await report2.next(), IncomingMessage) and api.asked == []


# --------------------------------------------------------------------------- connection details


def test_connected_reports_the_platform_and_business_name_of_the_device() -> None:
    me = pb.Device(JID=pb.JID(User="4915112345678", Device=12, Server="s.whatsapp.net"),
                   PushName="Ada's Shop", Platform="smba", BussinessName="Ada Ltd")
    assert map_event(wire(pb.Connected(status=True)), wire_device(me)) == SessionConnected(
        jid="4915112345678:12@s.whatsapp.net", phone_number="4915112345678",
        push_name="Ada's Shop", platform="smba", business_name="Ada Ltd")


def wire_device(device: Any) -> Any:
    return pb.Device.FromString(complete(device).SerializeToString())


async def test_a_link_made_in_this_attempt_lends_its_platform_to_connected(tmp_path: Path) -> None:
    run, report = _run(tmp_path, FakeApi(), None)
    paired = pb.PairStatus(ID=pb.JID(User="4915112345678", Device=3, Server="s.whatsapp.net"),
                           Platform="iphone", BusinessName="", Status=pb.PairStatus.SUCCESS)
    me = pb.Device(JID=pb.JID(User="4915112345678", Device=3, Server="s.whatsapp.net"), PushName="Ada")
    await asyncio.to_thread(_feed, run, paired, me, pb.Connected(status=True))
    assert await report.next() == PairSuccess(
        jid="4915112345678:3@s.whatsapp.net", phone_number="4915112345678", platform="iphone")
    assert await report.next() == SessionConnected(
        jid="4915112345678:3@s.whatsapp.net", phone_number="4915112345678", push_name="Ada",
        platform="iphone")


# --------------------------------------------------------------------------- outgoing


UPLOAD = pb.UploadResponse(
    url="https://mmg.whatsapp.net/o1/v/t62.7118-24/abc?ccb=11-4", DirectPath="/o1/v/t62.7118-24/abc",
    Handle="", MediaKey=b"m" * 32, FileEncSHA256=b"e" * 32, FileSHA256=SHA, FileLength=1234)


def _media(kind_mime: str, filename: str | None = None) -> MediaFile:
    return MediaFile(path="/nonexistent", mimetype=kind_mime, size=1234, filename=filename)


def _uploaded(sub: Any, mimetype: str) -> None:
    assert sub.URL == UPLOAD.url and sub.directPath == UPLOAD.DirectPath
    assert sub.mediaKey == UPLOAD.MediaKey and sub.fileEncSHA256 == UPLOAD.FileEncSHA256
    assert sub.fileSHA256 == SHA and sub.fileLength == 1234 and sub.mimetype == mimetype
    assert sub.mediaKeyTimestamp == 1_700_000_000


def test_an_image_goes_out_with_its_upload_caption_and_preview() -> None:
    msg = assemble(Outgoing("image", "a cat @4915112345678", _media("image/png")), UPLOAD,
                   thumbnail=b"\xff\xd8jpeg", width=640, height=480, sent_at=1_700_000_000)
    assert [f.name for f, _ in msg.ListFields()] == ["imageMessage"]
    _uploaded(msg.imageMessage, "image/png")
    assert msg.imageMessage.caption == "a cat @4915112345678"
    assert not msg.imageMessage.HasField("contextInfo")  # the caption is not parsed for mentions
    assert (msg.imageMessage.JPEGThumbnail, msg.imageMessage.width, msg.imageMessage.height) == (
        b"\xff\xd8jpeg", 640, 480)
    bare = assemble(Outgoing("image", "", _media("image/jpeg")), UPLOAD, sent_at=1_700_000_000)
    assert not bare.imageMessage.HasField("caption") and not bare.imageMessage.HasField("JPEGThumbnail")


def test_a_video_goes_out_with_its_caption() -> None:
    msg = assemble(Outgoing("video", "look", _media("video/mp4")), UPLOAD, sent_at=1_700_000_000)
    _uploaded(msg.videoMessage, "video/mp4")
    assert msg.videoMessage.caption == "look" and not msg.videoMessage.gifPlayback


def test_an_audio_is_not_a_voice_note() -> None:
    msg = assemble(Outgoing("audio", "", _media("audio/mpeg")), UPLOAD, sent_at=1_700_000_000)
    _uploaded(msg.audioMessage, "audio/mpeg")
    assert not msg.audioMessage.PTT


def test_a_voice_note_is_an_opus_audio_with_ptt() -> None:
    msg = assemble(Outgoing("voice", "", _media("audio/ogg")), UPLOAD, sent_at=1_700_000_000)
    _uploaded(msg.audioMessage, VOICE_MIMETYPE)
    assert msg.audioMessage.PTT
    # What WhatsApp itself sends is also accepted as it is.
    same = assemble(Outgoing("voice", "", _media(VOICE_MIMETYPE)), UPLOAD, sent_at=1_700_000_000)
    assert same.audioMessage.mimetype == VOICE_MIMETYPE and same.audioMessage.PTT


def test_a_document_goes_out_with_its_file_name_and_caption() -> None:
    msg = assemble(Outgoing("document", "March", _media("application/pdf", "invoice.pdf")), UPLOAD,
                   sent_at=1_700_000_000)
    _uploaded(msg.documentMessage, "application/pdf")
    assert (msg.documentMessage.fileName, msg.documentMessage.title) == ("invoice.pdf", "invoice.pdf")
    assert msg.documentMessage.caption == "March"
    unnamed = assemble(Outgoing("document", "", _media("application/pdf")), UPLOAD, sent_at=1)
    assert unnamed.documentMessage.fileName == "file.pdf"


def test_a_sticker_goes_out_as_a_sticker() -> None:
    msg = assemble(Outgoing("sticker", "", _media("image/webp")), UPLOAD, sent_at=1_700_000_000)
    _uploaded(msg.stickerMessage, "image/webp")
    assert [f.name for f, _ in msg.ListFields()] == ["stickerMessage"]
    assert not msg.stickerMessage.isAnimated


def test_an_animated_webp_goes_out_as_an_animated_sticker(tmp_path: Path) -> None:
    from PIL import Image

    frames = [Image.new("RGBA", (64, 64), (i * 80, 0, 0, 255)) for i in range(3)]
    moving, still = io.BytesIO(), io.BytesIO()
    frames[0].save(moving, format="webp", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(still, format="webp")
    for data, animated in ((moving.getvalue(), True), (still.getvalue(), False)):
        path = tmp_path / "s.webp"
        path.write_bytes(data)
        msg = build_outgoing(UploadingApi(), Outgoing("sticker", "", MediaFile(str(path), "image/webp", len(data))))  # type: ignore[arg-type]
        assert msg.stickerMessage.isAnimated is animated


def test_a_location_goes_out_without_an_upload() -> None:
    msg = assemble(Outgoing("location", location=Location(52.5163, 13.3777, "Tor", "Pariser Platz")))
    loc = msg.locationMessage
    assert (loc.degreesLatitude, loc.degreesLongitude, loc.name, loc.address) == (
        52.5163, 13.3777, "Tor", "Pariser Platz")
    bare = assemble(Outgoing("location", location=Location(1.5, -2.25)))
    assert not bare.locationMessage.HasField("name") and bare.locationMessage.degreesLongitude == -2.25


def test_a_contact_goes_out_as_neonizes_vcard_and_reads_back_the_same() -> None:
    card = Contact(name="Ada Lovelace", phone="4915112345678")
    msg = assemble(Outgoing("contact", contact=card))
    assert msg.contactMessage.displayName == "Ada Lovelace"
    assert "waid=4915112345678:+49 1511 2345678" in msg.contactMessage.vcard
    assert "FN:Ada Lovelace" in msg.contactMessage.vcard
    # What we send, we read back as the same contact.
    content = incoming_content(msg)
    assert content is not None and content[0] == "contact" and content[4] == card
    assert vcard_phone(vcard(Contact("X", "+999 12"))) == "99912"  # not a real number: still sent


def test_text_and_bad_messages() -> None:
    assert assemble(Outgoing("text", "hi")).conversation == "hi"
    with pytest.raises(ValueError, match="needs its media"):
        assemble(Outgoing("image", "x"), UPLOAD)
    with pytest.raises(ValueError, match="unknown message type"):
        assemble(Outgoing("poll", "x"))


class UploadingApi:
    """neonize's client as far as an upload goes: ``upload(data, media_type)`` answers with an
    ``UploadResponse`` for exactly those bytes (its hash and length), as neonize's does."""

    def __init__(self) -> None:
        self.uploads: list[tuple[bytes, MediaType]] = []

    def upload(self, data: bytes, media_type: MediaType | None = None) -> pb.UploadResponse:
        assert media_type is not None  # never left to neonize's sniffing
        self.uploads.append((data, media_type))
        return pb.UploadResponse(url="https://mmg/x", DirectPath="/x", MediaKey=b"k" * 32,
                                 FileEncSHA256=b"e" * 32, FileSHA256=hashlib.sha256(data).digest(),
                                 FileLength=len(data))


@pytest.mark.parametrize(("kind", "mimetype", "media_type", "field"), [
    ("image", "image/png", MediaType.MediaImage, "imageMessage"),
    ("sticker", "image/webp", MediaType.MediaImage, "stickerMessage"),
    ("video", "video/mp4", MediaType.MediaVideo, "videoMessage"),
    ("audio", "audio/mpeg", MediaType.MediaAudio, "audioMessage"),
    ("voice", "audio/ogg", MediaType.MediaAudio, "audioMessage"),
    ("document", "application/pdf", MediaType.MediaDocument, "documentMessage"),
])
def test_the_file_is_uploaded_with_the_keys_of_its_type(
    tmp_path: Path, kind: str, mimetype: str, media_type: MediaType, field: str
) -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 10, 10)).save(out, format="png")
    data = out.getvalue() if kind == "image" else b"bytes of a " + kind.encode()
    path = tmp_path / "file"
    path.write_bytes(data)
    api = UploadingApi()
    msg = build_outgoing(api, Outgoing(kind, "", MediaFile(str(path), mimetype, len(data))))  # type: ignore[arg-type]
    assert api.uploads == [(data, media_type)]
    sub = getattr(msg, field)
    assert sub.fileSHA256 == hashlib.sha256(data).digest() and sub.fileLength == len(data)
    if kind == "image":  # a real preview, made from the file
        assert (sub.width, sub.height) == (400, 300)
        preview = Image.open(io.BytesIO(sub.JPEGThumbnail))
        assert preview.format == "JPEG" and max(preview.size) == 200


async def test_send_refuses_an_incomplete_message_or_no_connection(tmp_path: Path) -> None:
    engine = NeonizeEngine()
    session = engine.session("s", Recorder(), auth_path=tmp_path / "s.db")
    with pytest.raises(NeonizeEngineError, match="needs its media"):
        await session.send("4915112345678", Outgoing("image", "x"))
    with pytest.raises(NeonizeEngineError, match="needs a location"):
        await session.send("4915112345678", Outgoing("location"))
    with pytest.raises(NeonizeEngineError, match="type 'poll'"):
        await session.send("4915112345678", Outgoing("poll"))
    with pytest.raises(NeonizeEngineError, match="not connected"):
        await session.send("4915112345678", Outgoing("contact", contact=Contact("A", "49151")))
    with pytest.raises(NeonizeEngineError, match="not a phone number"):
        await session.send("nobody", Outgoing("text", "hi"))
    await session.close()


def _ogg_page(granule: int, packet: bytes, seq: int, kind: int = 0) -> bytes:
    """One Ogg page (RFC 3533) holding ``packet`` (< 255 bytes)."""
    header = b"OggS" + bytes([0, kind]) + granule.to_bytes(8, "little", signed=True)
    header += (0x1234).to_bytes(4, "little") + seq.to_bytes(4, "little") + bytes(4)
    return header + bytes([1, len(packet)]) + packet


def _opus(seconds: float, pre_skip: int = 312) -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + pre_skip.to_bytes(2, "little") + (48000).to_bytes(4, "little") + bytes(3)
    tags = b"OpusTags" + (5).to_bytes(4, "little") + b"watui" + bytes(4)
    end = pre_skip + int(seconds * 48_000)
    return (_ogg_page(0, head, 0, kind=2) + _ogg_page(0, tags, 1)
            + _ogg_page(pre_skip + 48_000, b"\xfc" * 40, 2) + _ogg_page(end, b"\xfc" * 40, 3, kind=4))


def _box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def _mp4(scale: int, length: int, *, version: int = 0) -> bytes:
    if version == 1:
        mvhd = bytes([1, 0, 0, 0]) + bytes(16) + scale.to_bytes(4, "big") + length.to_bytes(8, "big")
    else:
        mvhd = bytes(4) + bytes(8) + scale.to_bytes(4, "big") + length.to_bytes(4, "big")
    mvhd += bytes(80)
    # The media data first, holding the bytes "mvhd" itself: only the movie header counts.
    return (_box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + _box(b"mdat", b"..mvhd" + bytes(64))
            + _box(b"moov", _box(b"mvhd", mvhd)))


def test_the_playing_time_is_read_from_the_files_headers() -> None:
    assert media_seconds(_opus(7.4)) == 7
    assert media_seconds(_opus(0.6)) == 1
    assert media_seconds(_mp4(600, 600 * 42)) == 42
    assert media_seconds(_mp4(1000, 2500, version=1)) == 2  # 2.5 s, rounded half to even
    assert media_seconds(b"\x00\x00\x00\x08free") == 0 and media_seconds(b"not media") == 0
    assert media_seconds(b"OggS") == 0  # cut short


def test_a_voice_note_goes_out_with_its_duration(tmp_path: Path) -> None:
    path = tmp_path / "note.ogg"
    path.write_bytes(_opus(12.2))
    api = UploadingApi()
    msg = build_outgoing(api, Outgoing("voice", "", MediaFile(str(path), "audio/ogg", path.stat().st_size)))  # type: ignore[arg-type]
    assert msg.audioMessage.seconds == 12 and msg.audioMessage.PTT
    assert msg.audioMessage.mimetype == VOICE_MIMETYPE
    unknown = assemble(Outgoing("video", "", _media("video/webm")), UPLOAD, sent_at=1)
    assert not unknown.videoMessage.HasField("seconds")  # unknown: left out, not 0
